"""Human in the loop through the consumer: approvals and questions, every decision and refusal."""

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from agents.models import InputRequest, Run
from tests.conftest import astored_frames, connect_user, receive_frame, send, start

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"steps": 1, "delay_ms": 0}


async def next_of(comm, wanted: str, timeout: float = 10) -> dict[str, Any]:
    """Return the next frame of type `wanted`, skipping others."""
    while True:
        frame = await receive_frame(comm, timeout=timeout)
        if frame["type"] == wanted:
            return frame


async def reply_to(comm, rid: str, timeout: float = 10) -> dict[str, Any]:
    """Return the reply (or error) carrying request_id `rid`, skipping events."""
    while True:
        frame = await receive_frame(comm, timeout=timeout)
        if frame.get("request_id") == rid and "seq" not in frame:
            return frame


async def resolve(comm, interrupt_id: str, decision: str, rid: str = "rv", **extra: Any) -> dict:
    await send(
        comm,
        {
            "type": "resolve_input",
            "request_id": rid,
            "payload": {"interrupt_id": interrupt_id, "decision": decision, **extra},
        },
    )
    return await reply_to(comm, rid)


async def run_events(comm, run_id: str) -> list[dict[str, Any]]:
    """Receive until the run's terminal event; return the run's events."""
    events = []
    while True:
        frame = await receive_frame(comm, timeout=15)
        if frame.get("run_id") == run_id and "seq" in frame:
            events.append(frame)
            if frame["type"] in {"agent_completed", "agent_error", "agent_cancelled"}:
                return events


def types(events):
    return [e["type"] for e in events]


async def row(interrupt_id: str) -> InputRequest:
    return await database_sync_to_async(InputRequest.objects.get)(pk=interrupt_id)


async def run_status(run_id: str) -> str:
    return (await database_sync_to_async(Run.objects.get)(pk=run_id)).status


async def test_approve_runs_the_tool_and_records_who_decided(amake_user, registry):
    comm, hello = await connect_user(await amake_user())
    accepted = await start(comm, "go", agent="stepper", options={**FAST, "approve_tools": True})
    asked = await next_of(comm, "input_requested")
    data = asked["data"]
    assert data["kind"] == "tool_approval"
    assert data["tool_name"] == "calculator"
    assert data["parameters"] == {"expression": "1*1"}
    assert data["expires_at"].endswith("Z")
    assert await run_status(accepted["run_id"]) == Run.Status.WAITING_INPUT
    reply = await resolve(comm, data["interrupt_id"], "approve")
    assert reply == {
        "type": "input_accepted",
        "request_id": "rv",
        "interrupt_id": data["interrupt_id"],
    }
    events = await run_events(comm, accepted["run_id"])
    assert types(events)[:3] == ["input_resolved", "tool_executing", "tool_completed"]
    assert events[0]["data"] == {
        "interrupt_id": data["interrupt_id"],
        "outcome": "approved",
        "by": "user",
    }
    assert events[-1]["type"] == "agent_completed"
    decided = await row(data["interrupt_id"])
    assert (decided.outcome, decided.decided_by) == ("approved", "user")
    assert decided.decided_connection == hello["connection_id"]
    assert decided.decided_at is not None
    assert await run_status(accepted["run_id"]) == Run.Status.COMPLETED
    # Each interrupt is answered once.
    again = await resolve(comm, data["interrupt_id"], "approve", rid="again")
    assert again["error"]["code"] == "already_resolved"
    await comm.disconnect()


async def test_reject_ends_the_call_as_tool_error_and_the_run_goes_on(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    accepted = await start(comm, "go", agent="stepper", options={**FAST, "approve_tools": True})
    asked = await next_of(comm, "input_requested")
    reply = await resolve(comm, asked["data"]["interrupt_id"], "reject", message="not now")
    assert reply["type"] == "input_accepted"
    events = await run_events(comm, accepted["run_id"])
    assert types(events)[0] == "input_resolved"
    assert events[0]["data"]["outcome"] == "rejected"
    assert "tool_executing" not in types(events)
    error = next(e for e in events if e["type"] == "tool_error")
    assert error["data"]["tool_call_id"] == asked["data"]["tool_call_id"]
    assert "rejected" in error["data"]["error"] and "not now" in error["data"]["error"]
    assert events[-1]["type"] == "agent_completed"
    await comm.disconnect()


async def test_edit_is_checked_like_the_tools_own_input(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    accepted = await start(comm, "go", agent="stepper", options={**FAST, "approve_tools": True})
    interrupt_id = (await next_of(comm, "input_requested"))["data"]["interrupt_id"]
    for bad in ({"expression": 42}, {}, {"expression": "2**"}):
        refused = await resolve(comm, interrupt_id, "edit", rid="bad", parameters=bad)
        assert refused["type"] == "error", bad
        assert refused["error"]["code"] == "invalid_message", bad
    assert (await row(interrupt_id)).outcome == "pending"
    reply = await resolve(comm, interrupt_id, "edit", parameters={"expression": "6*7"})
    assert reply["type"] == "input_accepted"
    events = await run_events(comm, accepted["run_id"])
    assert events[0]["data"]["outcome"] == "edited"
    executing = next(e for e in events if e["type"] == "tool_executing")
    assert executing["data"]["parameters"] == {"expression": "6*7"}
    completed = next(e for e in events if e["type"] == "tool_completed")
    assert completed["data"]["result"]["text"] == "42"
    await comm.disconnect()


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 2}},
    "required": ["city"],
    "additionalProperties": False,
}


async def test_a_question_is_answered_against_its_schema(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    options = {**FAST, "ask": "Which city?", "ask_schema": SCHEMA}
    accepted = await start(comm, "go", agent="stepper", options=options)
    asked = await next_of(comm, "input_requested")
    assert asked["data"]["kind"] == "question"
    assert asked["data"]["message"] == "Which city?"
    assert asked["data"]["response_schema"] == SCHEMA
    interrupt_id = asked["data"]["interrupt_id"]
    for bad in ({"town": "Paris"}, {"city": "P"}, "Paris"):
        refused = await resolve(comm, interrupt_id, "answer", rid="bad", answer=bad)
        assert refused["error"]["code"] == "invalid_message", bad
    wrong_kind = await resolve(comm, interrupt_id, "approve", rid="kind")
    assert wrong_kind["error"]["code"] == "invalid_message"
    reply = await resolve(comm, interrupt_id, "answer", answer={"city": "Paris"})
    assert reply["type"] == "input_accepted"
    events = await run_events(comm, accepted["run_id"])
    assert events[0]["data"] == {
        "interrupt_id": interrupt_id,
        "outcome": "answered",
        "by": "user",
        "answer": {"city": "Paris"},
    }
    assert events[-1]["data"]["result"].endswith('Answer: {"city": "Paris"}')
    await comm.disconnect()


async def test_another_users_resolve_looks_like_an_unknown_id(amake_user, registry):
    owner, _ = await connect_user(await amake_user())
    other, _ = await connect_user(await amake_user())
    await start(owner, "go", agent="stepper", options={**FAST, "ask": "Who?"})
    interrupt_id = (await next_of(owner, "input_requested"))["data"]["interrupt_id"]
    foreign = await resolve(other, interrupt_id, "answer", answer="me")
    unknown = await resolve(other, "in_" + "0" * 32, "answer", answer="me")
    assert foreign["error"]["code"] == unknown["error"]["code"] == "not_found"
    assert foreign["error"]["message"] == unknown["error"]["message"]
    assert (await row(interrupt_id)).outcome == "pending"
    await owner.disconnect()
    await other.disconnect()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"interrupt_id": "", "decision": "approve"},
        {"interrupt_id": 7, "decision": "approve"},
        {"interrupt_id": "x" * 65, "decision": "approve"},
        {"interrupt_id": "in_1", "decision": "maybe"},
        {"interrupt_id": "in_1", "decision": "edit"},
        {"interrupt_id": "in_1", "decision": "edit", "parameters": [1]},
        {"interrupt_id": "in_1", "decision": "answer"},
        {"interrupt_id": "in_1", "decision": "reject", "message": 5},
    ],
)
async def test_malformed_resolve_input_is_invalid_message(amake_user, registry, payload):
    comm, _ = await connect_user(await amake_user())
    await send(comm, {"type": "resolve_input", "request_id": "m", "payload": payload})
    reply = await reply_to(comm, "m")
    assert reply["error"]["code"] == "invalid_message"
    await comm.disconnect()


@override_settings(AGENT_INPUT_TIMEOUT_SECONDS=0.3)
async def test_an_unanswered_request_expires_and_the_call_does_not_run(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    accepted = await start(comm, "go", agent="stepper", options={**FAST, "approve_tools": True})
    interrupt_id = (await next_of(comm, "input_requested"))["data"]["interrupt_id"]
    events = await run_events(comm, accepted["run_id"])
    assert events[0]["data"] == {
        "interrupt_id": interrupt_id,
        "outcome": "expired",
        "by": "timeout",
    }
    error = next(e for e in events if e["type"] == "tool_error")
    assert "expired" in error["data"]["error"]
    assert events[-1]["type"] == "agent_completed"
    late = await resolve(comm, interrupt_id, "approve", rid="late")
    assert late["error"]["code"] == "already_resolved"
    await comm.disconnect()


async def test_stop_while_waiting_cancels_the_request_then_the_run(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    accepted = await start(comm, "go", agent="stepper", options={**FAST, "ask": "Sure?"})
    interrupt_id = (await next_of(comm, "input_requested"))["data"]["interrupt_id"]
    await send(comm, {"type": "stop_agent", "payload": {"run_id": accepted["run_id"]}})
    events = await run_events(comm, accepted["run_id"])
    assert types(events) == ["input_resolved", "agent_cancelled"]
    assert events[0]["data"] == {
        "interrupt_id": interrupt_id,
        "outcome": "cancelled",
        "by": "cancel",
    }
    assert (await row(interrupt_id)).decided_by == "cancel"
    await comm.disconnect()


async def test_shutdown_while_waiting_interrupts_the_request_and_the_run(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    accepted = await start(comm, "go", agent="stepper", options={**FAST, "approve_tools": True})
    interrupt_id = (await next_of(comm, "input_requested"))["data"]["interrupt_id"]
    left = await registry.drain(grace_seconds=0.2, reason="restarting")
    assert left == 1
    stored = await astored_frames(accepted["run_id"])
    assert types(stored)[-2:] == ["input_resolved", "agent_error"]
    assert stored[-2]["data"] == {
        "interrupt_id": interrupt_id,
        "outcome": "interrupted",
        "by": "shutdown",
    }
    assert stored[-1]["data"]["error"]["code"] == "interrupted"
    await comm.disconnect()


async def test_two_answers_at_once_one_wins(amake_user, registry):
    user = await amake_user()
    first, _ = await connect_user(user)
    second, _ = await connect_user(user)
    accepted = await start(first, "go", agent="stepper", options={**FAST, "ask": "Which?"})
    interrupt_id = (await next_of(first, "input_requested"))["data"]["interrupt_id"]
    await next_of(second, "input_requested")
    replies = await asyncio.gather(
        resolve(first, interrupt_id, "answer", rid="a", answer="one"),
        resolve(second, interrupt_id, "answer", rid="b", answer="two"),
    )
    kinds = sorted(r["type"] if r["type"] != "error" else r["error"]["code"] for r in replies)
    assert kinds == ["already_resolved", "input_accepted"]
    winner = "one" if replies[0]["type"] == "input_accepted" else "two"
    for comm in (first, second):
        events = await run_events(comm, accepted["run_id"])
        assert events[0]["data"]["answer"] == winner
        assert events[-1]["data"]["result"].endswith(f"Answer: {winner}")
    await first.disconnect()
    await second.disconnect()
