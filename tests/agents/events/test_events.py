"""Every event type an action emits, captured in order with exact fields (Zulip style)."""

import pytest

from agents.events.schema import EVENT_TYPES, check_envelope
from tests.conftest import collect_run, connect_user, send, start

pytestmark = pytest.mark.django_db(transaction=True)

SEEN_TYPES: set[str] = set()


def assert_envelopes(events, *, run_id, thread_id, agent):
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for event in events:
        check_envelope(event)
        assert (event["run_id"], event["thread_id"], event["agent_name"]) == (
            run_id,
            thread_id,
            agent,
        )
        SEEN_TYPES.add(event["type"])


async def run_and_capture(user, message, agent="triage", **payload):
    comm, _ = await connect_user(user)
    accepted = await start(comm, message, agent=agent, **payload)
    events = await collect_run(comm, accepted["run_id"])
    assert_envelopes(
        events, run_id=accepted["run_id"], thread_id=accepted["thread_id"], agent=agent
    )
    await comm.disconnect()
    return events


async def test_calculate_emits_exact_events(amake_user, registry):
    events = await run_and_capture(await amake_user(), "calculate 6*7")
    data = [(e["type"], e["data"]) for e in events]
    call_id = events[2]["data"]["tool_call_id"]
    assert call_id.startswith("call_")
    assert data[:5] == [
        ("agent_started", {"message": "calculate 6*7"}),
        (
            "agent_thinking",
            {"reasoning": "Reading the request to choose a tool.", "step": 1, "progress": 10},
        ),
        (
            "tool_executing",
            {
                "tool_name": "calculator",
                "tool_call_id": call_id,
                "parameters": {"expression": "6*7"},
            },
        ),
        (
            "tool_completed",
            {
                "tool_name": "calculator",
                "tool_call_id": call_id,
                "result": {"expression": "6*7", "value": 42, "text": "42"},
                "duration_ms": events[3]["data"]["duration_ms"],
            },
        ),
        ("agent_thinking", {"reasoning": "Writing the answer.", "step": 2, "progress": 90}),
    ]
    assert data[5] == ("partial_result", {"delta": "6*7 = 42"})
    assert data[6][0] == "agent_completed"
    assert data[6][1]["status"] == "completed"
    assert data[6][1]["result"] == "6*7 = 42"
    assert isinstance(data[6][1]["duration_ms"], int)


async def test_time_question_calls_the_clock(amake_user, registry):
    events = await run_and_capture(await amake_user(), "what time is it?")
    assert [e["type"] for e in events][2:4] == ["tool_executing", "tool_completed"]
    assert events[2]["data"]["tool_name"] == "clock"
    assert events[-1]["data"]["result"].startswith("It is ")


async def test_other_questions_search_the_knowledge_base(amake_user, registry):
    events = await run_and_capture(await amake_user(), "how do I stop a run?")
    assert events[2]["data"] == {
        "tool_name": "kb_search",
        "tool_call_id": events[2]["data"]["tool_call_id"],
        "parameters": {"query": "how do I stop a run?", "limit": 3},
    }
    assert events[3]["data"]["result"]["hits"][0]["title"] == "Stopping a run"
    assert events[-1]["data"]["result"].startswith("Stopping a run:")


async def test_stepper_emits_a_thinking_tool_and_text_per_step(amake_user, registry):
    events = await run_and_capture(
        await amake_user(), "go", agent="stepper", options={"steps": 3, "delay_ms": 0}
    )
    per_step = ["agent_thinking", "tool_executing", "tool_completed", "partial_result"]
    assert [e["type"] for e in events] == [
        "agent_started",
        *per_step * 3,
        "agent_completed",
    ]
    thinking = [e["data"] for e in events if e["type"] == "agent_thinking"]
    assert thinking == [
        {"reasoning": "Step 1 of 3", "step": 1, "progress": 33},
        {"reasoning": "Step 2 of 3", "step": 2, "progress": 67},
        {"reasoning": "Step 3 of 3", "step": 3, "progress": 100},
    ]
    assert [e["data"]["delta"] for e in events if e["type"] == "partial_result"] == [
        "step 1: 1\n",
        "step 2: 4\n",
        "step 3: 9\n",
    ]
    assert events[-1]["data"]["result"] == "Completed 3 steps."


async def test_tool_error_event(amake_user, registry):
    events = await run_and_capture(
        await amake_user(), "x", agent="scripted", options={"calls": [{"tool": "refusing"}]}
    )
    assert [e["type"] for e in events] == [
        "agent_started",
        "tool_executing",
        "tool_error",
        "agent_completed",
    ]
    error = events[2]["data"]
    assert error["tool_name"] == "refusing"
    assert error["tool_call_id"] == events[1]["data"]["tool_call_id"]
    assert error["error"] == "cannot do that"


async def test_agent_exception_becomes_agent_error_and_a_failed_run(amake_user, registry):
    from agents.models import Run

    events = await run_and_capture(
        await amake_user(), "x", agent="scripted", options={"fail": "model exploded"}
    )
    assert [e["type"] for e in events] == ["agent_started", "agent_error"]
    # the user gets a plain message; the internal detail stays for the admin
    error = events[1]["data"]["error"]
    assert error["code"] == "agent_failed"
    ref = error["message"].removeprefix("the agent ran into a problem (reference ").rstrip(")")
    assert error["message"] == f"the agent ran into a problem (reference {ref})" and len(ref) == 8
    assert "exploded" not in error["message"]
    run = await Run.objects.aget(pk=events[0]["run_id"])
    assert (run.status, run.error_code) == ("failed", "agent_failed")
    assert run.error_message == f"ref {ref}: RuntimeError: model exploded"


async def test_stop_agent_ends_the_run_with_agent_cancelled(amake_user, registry):
    from agents.models import Run

    user = await amake_user()
    comm, _ = await connect_user(user)
    accepted = await start(comm, "go", agent="stepper", options={"steps": 50, "delay_ms": 100})
    first = await comm.receive_json_from(timeout=5)
    assert first["type"] == "agent_started"
    await send(comm, {"type": "stop_agent", "payload": {"run_id": accepted["run_id"]}})
    events = [first, *await collect_run(comm, accepted["run_id"])]
    assert_envelopes(
        events, run_id=accepted["run_id"], thread_id=accepted["thread_id"], agent="stepper"
    )
    assert events[-1]["type"] == "agent_cancelled"
    assert events[-1]["data"] == {"reason": "stopped by user"}
    assert [e["type"] for e in events].count("agent_started") == 1
    run = await Run.objects.aget(pk=accepted["run_id"])
    assert run.status == "cancelled"
    await comm.disconnect()


async def test_a_question_emits_input_requested_then_input_resolved(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    options = {"steps": 1, "delay_ms": 0, "ask": "Your name?"}
    accepted = await start(comm, "go", agent="stepper", options=options)
    events = [await comm.receive_json_from(timeout=5) for _ in range(2)]
    assert [e["type"] for e in events] == ["agent_started", "input_requested"]
    asked = events[1]["data"]
    assert set(asked) == {"interrupt_id", "kind", "message", "expires_at"}
    assert (asked["kind"], asked["message"]) == ("question", "Your name?")
    payload = {"interrupt_id": asked["interrupt_id"], "decision": "answer", "answer": "Ada"}
    await send(comm, {"type": "resolve_input", "request_id": "q", "payload": payload})
    reply = await comm.receive_json_from(timeout=5)
    assert reply == {
        "type": "input_accepted",
        "request_id": "q",
        "interrupt_id": asked["interrupt_id"],
    }
    events += await collect_run(comm, accepted["run_id"])
    assert_envelopes(
        events, run_id=accepted["run_id"], thread_id=accepted["thread_id"], agent="stepper"
    )
    assert [(e["type"], e["data"]) for e in events][2] == (
        "input_resolved",
        {
            "interrupt_id": asked["interrupt_id"],
            "outcome": "answered",
            "by": "user",
            "answer": "Ada",
        },
    )
    assert events[-1]["data"]["result"] == "Completed 1 steps. Answer: Ada"
    await comm.disconnect()


def test_every_event_type_was_captured_above():
    # Runs last in this module (pytest keeps file order): each declared type was seen.
    assert set(EVENT_TYPES) == SEEN_TYPES
