"""Every refusal, sent during a live run through daphne, changes nothing for the socket."""

import asyncio
import json
import time
import uuid

import pytest

from tests.daphne import Daphne, manage, sqlite_env, stored_events
from tests.protocol_model import TERMINAL, Tab

pytestmark = pytest.mark.e2e

LIMITS = {
    "AGENT_MAX_CONCURRENT_RUNS": "2",
    "WS_START_RATE_BURST": "3",
    "WS_START_RATE_PER_SECOND": "0.1",
    "WS_MAX_MESSAGE_CHARS": "100",
}
LONG_RUN = {"agent": "stepper", "message": "long", "options": {"steps": 40, "delay_ms": 25}}


@pytest.fixture(scope="module")
def served():
    with sqlite_env(**LIMITS) as env, Daphne(env) as server:
        yield env, server


def start(payload, rid):
    return json.dumps({"type": "start_agent", "request_id": rid, "payload": payload})


async def reply_to(tab, rid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in tab.frames:
            if frame.get("request_id") == rid:
                return frame
        await asyncio.sleep(0.01)
    raise AssertionError(f"no reply to {rid}: {tab.frames[-5:]}")


async def refuse_thread_busy(tab, run):
    busy = {**LONG_RUN, "thread_id": run["thread_id"], "on_busy": "reject"}
    await tab.ws.send(start(busy, "refused"))


async def refuse_too_many_runs(tab, run):
    await tab.ws.send(start(LONG_RUN, "second"))
    assert (await reply_to(tab, "second"))["type"] == "run_accepted"
    await tab.ws.send(start(LONG_RUN, "refused"))


async def refuse_rate_limited(tab, run):
    # Two quick runs use the rest of the burst of 3 (the long run took one).
    for rid in ("quick1", "quick2"):
        await tab.ws.send(start({"agent": "triage", "message": "calculate 1+1"}, rid))
        quick = await reply_to(tab, rid)
        assert quick["type"] == "run_accepted", quick
        while not any(
            e["run_id"] == quick["run_id"] and e["type"] in TERMINAL for e in tab.events()
        ):
            await asyncio.sleep(0.01)
    await tab.ws.send(start({"agent": "triage", "message": "calculate 2+2"}, "refused"))


async def refuse_unknown_agent(tab, run):
    await tab.ws.send(start({"agent": "nobody", "message": "hi"}, "refused"))


async def refuse_invalid_message(tab, run):
    await tab.ws.send(start({**LONG_RUN, "thread_id": "not-a-uuid"}, "refused"))


async def refuse_not_found(tab, run):
    stop = {"type": "stop_agent", "request_id": "refused", "payload": {"run_id": str(uuid.uuid4())}}
    await tab.ws.send(json.dumps(stop))


async def refuse_message_too_large(tab, run):
    await tab.ws.send(start({**LONG_RUN, "message": "x" * 101}, "refused"))


async def refuse_invalid_json(tab, run):
    await tab.ws.send("{nope")


async def refuse_unknown_type(tab, run):
    await tab.ws.send(json.dumps({"type": "dance", "request_id": "refused"}))


REFUSALS = {
    "thread_busy": refuse_thread_busy,
    "too_many_runs": refuse_too_many_runs,
    "rate_limited": refuse_rate_limited,
    "unknown_agent": refuse_unknown_agent,
    "invalid_message": refuse_invalid_message,
    "not_found": refuse_not_found,
    "message_too_large": refuse_message_too_large,
    "invalid_json": refuse_invalid_json,
    "unknown_type": refuse_unknown_type,
}


@pytest.mark.parametrize("code", list(REFUSALS))
async def test_a_refusal_during_a_live_run_leaves_the_socket_whole(served, code):
    env, server = served
    username = f"refuse{uuid.uuid4().hex[:8]}"
    token = manage(env, "issue_token", username, "--create-user")
    tab, watcher = Tab("asker", username, server), Tab("watcher", username, server)
    await tab.connect(token)
    await watcher.connect(token)
    try:
        await tab.ws.send(start(LONG_RUN, "long"))
        run = await reply_to(tab, "long")
        assert run["type"] == "run_accepted", run
        while not any(e["run_id"] == run["run_id"] for e in tab.events()):
            await asyncio.sleep(0.01)

        await REFUSALS[code](tab, run)
        errors = [f for f in tab.frames if f["type"] == "error"]
        while not errors:
            await asyncio.sleep(0.01)
            errors = [f for f in tab.frames if f["type"] == "error"]
        assert [e["error"]["code"] for e in errors] == [code]
        refused_at = tab.frames.index(errors[0])

        # The run goes on and reaches the socket: live events after the refusal, then a stop.
        while not [f for f in tab.frames[refused_at:] if f.get("run_id") == run["run_id"]]:
            await asyncio.sleep(0.01)
        accepted = [f["run_id"] for f in tab.frames if f["type"] == "run_accepted"]
        for run_id in accepted:
            stop = {"type": "stop_agent", "payload": {"run_id": run_id}}
            await tab.ws.send(json.dumps(stop))
        for socket in (tab, watcher):
            deadline = time.monotonic() + 20
            while {e["run_id"] for e in socket.events() if e["type"] in TERMINAL} != set(accepted):
                assert time.monotonic() < deadline, f"{socket.name} missed a terminal event"
                await asyncio.sleep(0.02)
        assert not tab.closed.is_set() and not watcher.closed.is_set()
    finally:
        await tab.ws.close()
        await watcher.ws.close()

    stored = [(seq, kind, run_id) for seq, kind, run_id, _ in stored_events(env, username)]
    for socket in (tab, watcher):
        got = [(e["seq"], e["type"], e["run_id"]) for e in socket.events()]
        assert got == stored, socket.name
    kinds = [kind for _, kind, run_id in stored if run_id == run["run_id"]]
    assert kinds[0] == "agent_started" and kinds[-1] == "agent_cancelled"
