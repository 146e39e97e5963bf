"""AG-UI through a real daphne: @ag-ui/client in Node, resumption, isolation and refusals."""

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.agui import request, run_input
from tests.daphne import Daphne, manage, sqlite_env, stored_events
from tests.services import missing_service
from tests.wsclient import AgentClient

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tests" / "e2e" / "js" / "agui_run.mjs"
RELAXED = {
    "WS_START_RATE_PER_SECOND": "100",
    "WS_START_RATE_BURST": "100",
    "AGUI_HEARTBEAT_SECONDS": "0.2",
}
ENDS = {"RUN_FINISHED", "RUN_ERROR"}


def ended(event):
    return event.data["type"] in ENDS


@pytest.fixture(scope="module")
def server():
    with sqlite_env(**RELAXED) as env, Daphne(env) as daphne:
        yield env, daphne


def new_user(env):
    username = f"agui{uuid.uuid4().hex[:8]}"
    return username, manage(env, "issue_token", username, "--create-user")


def node_client():
    if shutil.which("node") is None or not (ROOT / "node_modules" / "@ag-ui" / "client").exists():
        missing_service("node", "node and `npm ci` (package-lock.json) for @ag-ui/client")
    return shutil.which("node")


def run_node(server, token, agent, message, options=None):
    done = subprocess.run(
        [
            node_client(),
            str(CLIENT),
            server.http_url,
            token,
            agent,
            message,
            json.dumps(options or {}),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done


def test_ag_ui_client_runs_triage_and_stepper_and_verifies_the_stream(server):
    env, daphne = server
    _, token = new_user(env)
    triage, done = run_node(daphne, token, "triage", "calculate 6*7")
    assert triage["ok"], (triage, done.stderr)
    assert triage["events"][0] == "RUN_STARTED" and triage["events"][-1] == "RUN_FINISHED"
    assert "TOOL_CALL_RESULT" in triage["events"]
    assert triage["finished"] == {"outcome": "success", "result": "6*7 = 42"}
    assert triage["answer"] == ["6*7 = 42"]
    stepper, done = run_node(daphne, token, "stepper", "go", {"steps": 3, "delay_ms": 10})
    assert stepper["ok"], (stepper, done.stderr)
    assert stepper["events"].count("TOOL_CALL_START") == 3
    assert stepper["answer"][-1] == "Completed 3 steps."
    assert stepper["toolResults"][2] == '{"expression": "3*3", "value": 9, "text": "9"}'


async def test_every_event_parses_and_carries_its_seq(server):
    env, daphne = server
    username, token = new_user(env)
    body = run_input("calculate 6*7", agent="triage")
    answer = await request(daphne.port, "POST", "/agui/", token=token, body=body, stop=ended)
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.types()[0] == "RUN_STARTED" and answer.types()[-1] == "RUN_FINISHED"
    ids = [e.id for e in answer.events]
    assert ids == sorted(ids)  # ids never decrease
    stored = [seq for seq, *_ in stored_events(env, username)]
    assert answer.seqs() == stored  # one id per event of ours, every one of them


async def test_a_cut_mid_run_then_last_event_id_gives_exactly_the_missing_events(server):
    env, daphne = server
    username, token = new_user(env)
    body = run_input("walk", agent="stepper", options={"steps": 8, "delay_ms": 80})
    first = await request(daphne.port, "POST", "/agui/", token=token, body=body, cut_after=12)
    assert first.status == 200 and not any(ended(e) for e in first.events)
    last = first.events[-1].id
    thread_id = body["threadId"]
    second = await request(
        daphne.port,
        "GET",
        f"/agui/threads/{thread_id}/events",
        token=token,
        headers={"Last-Event-ID": str(last)},
        stop=ended,
    )
    assert second.status == 200
    assert all(event.id > last for event in second.events)
    stored = [seq for seq, *_ in stored_events(env, username)]
    assert first.seqs() + second.seqs() == stored  # each once, none missing
    assert second.types()[-1] == "RUN_FINISHED"
    # ?after= does the same as Last-Event-ID.
    again = await request(
        daphne.port,
        "GET",
        f"/agui/threads/{thread_id}/events?after={last}",
        token=token,
        stop=ended,
    )
    assert again.seqs() == second.seqs()


async def test_one_run_over_the_websocket_and_ag_ui_shows_the_same_seqs(server):
    env, daphne = server
    _, token = new_user(env)
    tab = AgentClient(daphne.ws_url, token)
    await tab.connect()
    # A thread of the user's, then a GET that follows it live while a run goes.
    first = await tab.start("calculate 1+1")
    await tab.until_terminal({first["run_id"]})
    thread_id = first["thread_id"]
    after = tab.last_seq
    watching = asyncio.ensure_future(
        request(
            daphne.port,
            "GET",
            f"/agui/threads/{thread_id}/events?after={after}",
            token=token,
            stop=ended,
        )
    )
    await asyncio.sleep(0.3)
    run = await tab.start(
        "go", agent="stepper", thread_id=thread_id, options={"steps": 4, "delay_ms": 30}
    )
    await tab.until_terminal({run["run_id"]})
    followed = await watching
    await tab.close()
    over_ws = [e["seq"] for e in tab.events if e["run_id"] == run["run_id"]]
    assert followed.seqs() == over_ws
    assert followed.comments >= 1  # heartbeats while it waited for the run


async def test_interrupts_end_the_stream_and_resume_continues_the_run(server):
    env, daphne = server
    _, token = new_user(env)
    body = run_input("approve me", agent="stepper", options={"steps": 1, "approve_tools": True})
    asked = await request(daphne.port, "POST", "/agui/", token=token, body=body, stop=ended)
    finished = asked.events[-1].data
    assert finished["type"] == "RUN_FINISHED" and finished["outcome"]["type"] == "interrupt"
    interrupt = finished["outcome"]["interrupts"][0]
    assert interrupt["reason"] == "tool_approval"
    assert interrupt["metadata"]["tool_name"] == "calculator"
    resume = {
        **run_input("approve me", thread_id=body["threadId"]),
        "resume": [{"interruptId": interrupt["id"], "status": "resolved", "payload": True}],
    }
    went_on = await request(daphne.port, "POST", "/agui/", token=token, body=resume, stop=ended)
    assert went_on.status == 200, went_on.body
    assert went_on.types()[0] == "RUN_STARTED"
    assert "TOOL_CALL_RESULT" in went_on.types()
    assert went_on.events[-1].data["outcome"]["type"] == "success"
    # Answered once: a second resume of the same interrupt is refused.
    twice = await request(daphne.port, "POST", "/agui/", token=token, body=resume)
    assert (twice.status, twice.json()["error"]["code"]) == (409, "already_resolved")


async def test_refusals_get_their_documented_answers(server):
    env, daphne = server
    _, token = new_user(env)
    _, stranger = new_user(env)
    owned = run_input("calculate 2+2", agent="triage")
    done = await request(daphne.port, "POST", "/agui/", token=token, body=owned, stop=ended)
    assert done.status == 200
    thread = owned["threadId"]
    # Another user's thread: 404 on both endpoints, like an unknown one.
    foreign = await request(daphne.port, "GET", f"/agui/threads/{thread}/events", token=stranger)
    unknown = await request(
        daphne.port, "GET", f"/agui/threads/{uuid.uuid4()}/events", token=stranger
    )
    assert foreign.status == unknown.status == 404
    assert foreign.json() == unknown.json()
    posted = await request(
        daphne.port, "POST", "/agui/", token=stranger, body=run_input("hi", thread_id=thread)
    )
    assert (posted.status, posted.json()["error"]["code"]) == (404, "not_found")
    # Bad input: 422 naming the field.
    bad = await request(
        daphne.port, "POST", "/agui/", token=token, body={"threadId": thread, "messages": "no"}
    )
    assert bad.status == 422
    fields = {f["field"] for f in bad.json()["error"]["fields"]}
    assert {"runId", "messages"} <= fields
    not_json = await request(daphne.port, "POST", "/agui/", token=token, body=b"{oops")
    assert (not_json.status, not_json.json()["error"]["code"]) == (422, "invalid_json")
    # An oversize message: 413, as message_too_large on the socket.
    big = await request(
        daphne.port, "POST", "/agui/", token=token, body=run_input("x" * 8001, agent="triage")
    )
    assert (big.status, big.json()["error"]["code"]) == (413, "message_too_large")
    # No credentials: 401; a browser on another site: 403.
    anonymous = await request(daphne.port, "POST", "/agui/", body=run_input("hi"))
    assert anonymous.status == 401
    elsewhere = await request(
        daphne.port,
        "POST",
        "/agui/",
        token=token,
        body=run_input("hi"),
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status == 403
    assert not daphne.error_lines()
