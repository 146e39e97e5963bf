"""Human in the loop through real daphne processes and real sockets."""

import asyncio
import json
import signal
import urllib.request
import uuid
from typing import Any

import pytest

from tests.daphne import (
    Daphne,
    manage,
    seen,
    shared_services,
    sqlite_env,
    stored_events,
)
from tests.fake_llm import FakeLLM, Reply, sse, text_chunks, tool_call_chunks
from tests.services import require_postgres, require_redis
from tests.wsclient import AgentClient

pytestmark = pytest.mark.e2e

RELAXED = {
    "WS_START_RATE_PER_SECOND": "100",
    "WS_START_RATE_BURST": "100",
    "AGENT_MAX_CONCURRENT_RUNS": "20",
}
APPROVE = {"steps": 1, "delay_ms": 0, "approve_tools": True}


def new_user(env: dict[str, str]) -> tuple[str, str]:
    username = f"hitl{uuid.uuid4().hex[:8]}"
    return username, manage(env, "issue_token", username, "--create-user")


class Tab(AgentClient):
    """A client that can wait for an event type and send requests answered by request_id."""

    async def request(self, frame_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a request; return its reply or error (events meanwhile are taken)."""
        rid = f"{frame_type}-{uuid.uuid4().hex[:6]}"
        await self.send({"type": frame_type, "request_id": rid, "payload": payload})
        while True:
            frame = await self.recv()
            if frame.get("request_id") == rid and "seq" not in frame:
                return frame
            self.take(frame)

    async def resolve(self, interrupt_id: str, decision: str, **extra: Any) -> dict[str, Any]:
        """Send resolve_input; return input_accepted or the error."""
        payload = {"interrupt_id": interrupt_id, "decision": decision, **extra}
        return await self.request("resolve_input", payload)

    async def until(self, event_type: str, run_id: str, timeout: float = 20) -> dict[str, Any]:
        """Return the run's first event of `event_type` taken so far or arriving next."""
        while True:
            for event in self.events:
                if event["type"] == event_type and event["run_id"] == run_id:
                    return event
            self.take(await self.recv(timeout))

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        """Return the run's events taken so far."""
        return [e for e in self.events if e["run_id"] == run_id]


def metrics(server: Daphne) -> str:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as response:
        return response.read().decode()


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def error_code(reply: dict[str, Any]) -> str:
    return reply["error"]["code"] if reply["type"] == "error" else reply["type"]


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_request_raised_on_one_process_is_approved_from_the_other():
    with shared_services(require_postgres(), require_redis(), **RELAXED) as (env, servers):
        first, second = servers
        username, token = new_user(env)
        on_a, on_b = Tab(first.ws_url, token), Tab(second.ws_url, token)
        await on_a.connect()
        await on_b.connect()
        run = await on_a.start("go", agent="stepper", options=APPROVE)
        asked = await on_b.until("input_requested", run["run_id"])
        assert asked == await on_a.until("input_requested", run["run_id"])
        reply = await on_b.resolve(asked["data"]["interrupt_id"], "approve")
        assert reply["type"] == "input_accepted"
        for tab in (on_a, on_b):
            await tab.until_terminal({run["run_id"]})
            events = tab.of_run(run["run_id"])
            assert types(events) == [
                "agent_started",
                "agent_thinking",
                "input_requested",
                "input_resolved",
                "tool_executing",
                "tool_completed",
                "partial_result",
                "agent_completed",
            ]
            assert events[3]["data"]["outcome"] == "approved"
        # The run on the first process was woken by the second's control message.
        assert 'chatplatform_input_wakeups_total{via="control"} 1.0' in metrics(first)

        # Two answers at once, one from each process: exactly one wins.
        run = await on_a.start("go", agent="stepper", options={"steps": 1, "ask": "Colour?"})
        interrupt_id = (await on_a.until("input_requested", run["run_id"]))["data"]["interrupt_id"]
        await on_b.until("input_requested", run["run_id"])
        replies = await asyncio.gather(
            on_a.resolve(interrupt_id, "answer", answer="red"),
            on_b.resolve(interrupt_id, "answer", answer="blue"),
        )
        assert sorted(map(error_code, replies)) == ["already_resolved", "input_accepted"]
        winner = "red" if replies[0]["type"] == "input_accepted" else "blue"
        for tab in (on_a, on_b):
            await tab.until_terminal({run["run_id"]})
            resolved = await tab.until("input_resolved", run["run_id"])
            assert resolved["data"]["answer"] == winner
        stored = stored_events(env, username)
        for tab in (on_a, on_b):
            assert seen(tab.events) == stored
            await tab.close()


async def test_reject_edit_and_questions_with_their_schema():
    with sqlite_env(**RELAXED) as env, Daphne(env) as server:
        _, token = new_user(env)
        tab = Tab(server.ws_url, token)
        await tab.connect()

        rejected = await tab.start("go", agent="stepper", options=APPROVE)
        asked = await tab.until("input_requested", rejected["run_id"])
        reply = await tab.resolve(asked["data"]["interrupt_id"], "reject", message="too risky")
        assert reply["type"] == "input_accepted"
        await tab.until_terminal({rejected["run_id"]})
        events = tab.of_run(rejected["run_id"])
        assert "tool_executing" not in types(events)
        error = next(e for e in events if e["type"] == "tool_error")
        assert "too risky" in error["data"]["error"]
        assert events[-1]["type"] == "agent_completed"

        edited = await tab.start("go", agent="stepper", options=APPROVE)
        interrupt_id = (await tab.until("input_requested", edited["run_id"]))["data"][
            "interrupt_id"
        ]
        refused = await tab.resolve(interrupt_id, "edit", parameters={"expression": "1/0"})
        assert error_code(refused) == "invalid_message"
        refused = await tab.resolve(interrupt_id, "edit", parameters={"expr": "1"})
        assert error_code(refused) == "invalid_message"
        reply = await tab.resolve(interrupt_id, "edit", parameters={"expression": "6*7"})
        assert reply["type"] == "input_accepted"
        await tab.until_terminal({edited["run_id"]})
        done = next(e for e in tab.of_run(edited["run_id"]) if e["type"] == "tool_completed")
        assert done["data"]["result"]["text"] == "42"

        schema = {"type": "integer", "minimum": 1, "maximum": 10}
        options = {"steps": 1, "ask": "How many?", "ask_schema": schema}
        question = await tab.start("go", agent="stepper", options=options)
        asked = await tab.until("input_requested", question["run_id"])
        assert asked["data"]["response_schema"] == schema
        interrupt_id = asked["data"]["interrupt_id"]
        for bad in (0, 11, "3", 2.5):
            assert error_code(await tab.resolve(interrupt_id, "answer", answer=bad)) == (
                "invalid_message"
            )
        assert (await tab.resolve(interrupt_id, "answer", answer=3))["type"] == "input_accepted"
        await tab.until_terminal({question["run_id"]})
        assert tab.of_run(question["run_id"])[-1]["data"]["result"].endswith("Answer: 3")
        await tab.close()


async def test_expiry_stop_and_another_users_resolve():
    with sqlite_env(AGENT_INPUT_TIMEOUT_SECONDS="1", **RELAXED) as env, Daphne(env) as server:
        _, token = new_user(env)
        _, stranger_token = new_user(env)
        tab, stranger = Tab(server.ws_url, token), Tab(server.ws_url, stranger_token)
        await tab.connect()
        await stranger.connect()

        waits = await tab.start("go", agent="stepper", options=APPROVE)
        interrupt_id = (await tab.until("input_requested", waits["run_id"]))["data"]["interrupt_id"]
        foreign = await stranger.resolve(interrupt_id, "approve")
        unknown = await stranger.resolve("in_" + "f" * 32, "approve")
        assert foreign["error"] == unknown["error"]
        assert foreign["error"]["code"] == "not_found"
        await tab.until_terminal({waits["run_id"]})
        resolved = await tab.until("input_resolved", waits["run_id"])
        assert resolved["data"] == {
            "interrupt_id": interrupt_id,
            "outcome": "expired",
            "by": "timeout",
        }
        assert error_code(await tab.resolve(interrupt_id, "approve")) == "already_resolved"

        stopped = await tab.start("go", agent="stepper", options={"steps": 1, "ask": "Ok?"})
        interrupt_id = (await tab.until("input_requested", stopped["run_id"]))["data"][
            "interrupt_id"
        ]
        await tab.send({"type": "stop_agent", "payload": {"run_id": stopped["run_id"]}})
        await tab.until_terminal({stopped["run_id"]})
        assert types(tab.of_run(stopped["run_id"]))[-2:] == ["input_resolved", "agent_cancelled"]
        assert tab.of_run(stopped["run_id"])[-2]["data"]["outcome"] == "cancelled"
        await tab.close()
        await stranger.close()
    assert stranger.events == []


async def test_a_fresh_tab_resuming_from_zero_sees_the_pending_request_and_answers_it():
    with sqlite_env(**RELAXED) as env, Daphne(env) as server:
        username, token = new_user(env)
        first = Tab(server.ws_url, token)
        await first.connect()
        run = await first.start("go", agent="stepper", options={"steps": 1, "ask": "Name?"})
        asked = await first.until("input_requested", run["run_id"])
        await first.close()

        fresh = Tab(server.ws_url, token)
        await fresh.connect()  # resumes from 0
        pending = [e for e in fresh.events if e["type"] == "input_requested"]
        assert pending == [asked]
        assert "input_resolved" not in types(fresh.events)
        reply = await fresh.resolve(asked["data"]["interrupt_id"], "answer", answer="Ada")
        assert reply["type"] == "input_accepted"
        await fresh.until_terminal({run["run_id"]})
        assert fresh.of_run(run["run_id"])[-1]["data"]["result"].endswith("Answer: Ada")
        assert seen(fresh.events) == stored_events(env, username)
        await fresh.close()


async def test_sigterm_while_waiting_ends_the_request_and_the_run_interrupted():
    with sqlite_env(AGENT_SHUTDOWN_GRACE_SECONDS="0.5", **RELAXED) as env:
        server = Daphne(env).start()
        username, token = new_user(env)
        tab = Tab(server.ws_url, token)
        await tab.connect()
        run = await tab.start("go", agent="stepper", options=APPROVE)
        asked = await tab.until("input_requested", run["run_id"])
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) is not None
        tab.abort()
        with Daphne(env) as restarted:
            tab.url = restarted.ws_url
            await tab.connect()
            await tab.until_terminal({run["run_id"]})
            refused = await tab.resolve(asked["data"]["interrupt_id"], "approve")
            stored = stored_events(env, username)
            await tab.close()
        server.stop()
    assert not server.error_lines()
    assert seen(tab.events) == stored
    events = tab.of_run(run["run_id"])
    assert types(events)[-2:] == ["input_resolved", "agent_error"]
    assert events[-2]["data"] == {
        "interrupt_id": asked["data"]["interrupt_id"],
        "outcome": "interrupted",
        "by": "shutdown",
    }
    assert events[-1]["data"]["error"]["code"] == "interrupted"
    assert error_code(refused) == "already_resolved"


def configure_llm(env: dict[str, str], base_url: str) -> None:
    """Point the `assistant` agent at the fake server; calculator calls need approval."""
    config = {"base_url": base_url, "model": "fake", "timeout_seconds": 5}
    manage(
        env,
        "shell",
        "-c",
        "from agents.models import Agent; Agent.objects.filter(name='assistant').update("
        "enabled=True, allowed_tools=['calculator'], approval_tools=['calculator'], "
        f"config={config!r})",
    )


async def test_the_llm_agent_asks_before_its_tool_and_hands_a_rejection_to_the_model():
    fake = await FakeLLM().start()
    call = tool_call_chunks("call_m", "calculator", '{"expression": "6*7"}')
    fake.replies += [
        Reply(lines=sse(*call, usage=(50, 10))),
        Reply(lines=sse(*text_chunks("It is ", "42."), usage=(70, 5))),
        Reply(lines=sse(*call, usage=(50, 10))),
        Reply(lines=sse(*text_chunks("As you wish."), usage=(80, 4))),
    ]
    try:
        with sqlite_env(**RELAXED) as env, Daphne(env) as server:
            configure_llm(env, fake.base_url)
            username, token = new_user(env)
            tab = Tab(server.ws_url, token)
            await tab.connect()

            approved = await tab.start("what is 6*7?", agent="assistant")
            asked = await tab.until("input_requested", approved["run_id"])
            assert asked["data"]["tool_name"] == "calculator"
            assert asked["data"]["parameters"] == {"expression": "6*7"}
            reply = await tab.resolve(asked["data"]["interrupt_id"], "approve")
            assert reply["type"] == "input_accepted"
            await tab.until_terminal({approved["run_id"]})
            events = tab.of_run(approved["run_id"])
            assert types(events)[2:6] == [
                "input_requested",
                "input_resolved",
                "tool_executing",
                "tool_completed",
            ]
            assert events[-1]["data"]["result"] == "It is 42."
            assert events[-1]["data"]["usage"] == {"input_tokens": 120, "output_tokens": 15}
            assert json.loads(fake.requests[1]["json"]["messages"][-1]["content"])["value"] == 42

            rejected = await tab.start("and again?", agent="assistant")
            asked = await tab.until("input_requested", rejected["run_id"])
            reply = await tab.resolve(
                asked["data"]["interrupt_id"], "reject", message="no more sums"
            )
            assert reply["type"] == "input_accepted"
            await tab.until_terminal({rejected["run_id"]})
            events = tab.of_run(rejected["run_id"])
            assert "tool_executing" not in types(events)
            assert events[-1]["data"]["usage"] == {"input_tokens": 130, "output_tokens": 14}
            tool_message = fake.requests[3]["json"]["messages"][-1]
            assert tool_message["role"] == "tool"
            assert tool_message["tool_call_id"] == "call_m"
            assert "rejected" in tool_message["content"]
            assert "no more sums" in tool_message["content"]
            exported = metrics(server)
            assert 'chatplatform_llm_tokens_total{agent="assistant",direction="input"} 250.0' in (
                exported
            )
            assert seen(tab.events) == stored_events(env, username)
            await tab.close()
    finally:
        await fake.stop()
