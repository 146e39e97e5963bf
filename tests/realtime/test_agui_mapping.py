"""Each of our event types as AG-UI events, checked with the ag-ui-protocol models."""

import json

from ag_ui.core import Event
from pydantic import TypeAdapter

from agents.events.schema import EVENT_TYPES
from realtime.agui.mapping import Translator, sse

EVENT = TypeAdapter(Event)
RUN = {
    "run_id": "r1",
    "thread_id": "t1",
    "agent_name": "stepper",
    "timestamp": "2026-01-01T00:00:00Z",
}


def envelope(seq, event_type, **data):
    return {"type": event_type, "seq": seq, **RUN, "data": data}


STORY = [
    envelope(1, "agent_started", message="go"),
    envelope(2, "agent_thinking", reasoning="Step 1", step=1, progress=50),
    envelope(3, "partial_result", delta="hello "),
    envelope(4, "partial_result", delta="world"),
    envelope(5, "tool_executing", tool_name="calculator", tool_call_id="c1", parameters={"x": 1}),
    envelope(
        6,
        "tool_completed",
        tool_name="calculator",
        tool_call_id="c1",
        result={"v": 1},
        duration_ms=1,
    ),
    envelope(
        7,
        "input_requested",
        interrupt_id="in_1",
        kind="tool_approval",
        message="Allow?",
        expires_at="2026-01-01T00:05:00Z",
        tool_name="calculator",
        tool_call_id="c2",
        parameters={"x": 2},
    ),
    envelope(8, "input_resolved", interrupt_id="in_1", outcome="rejected", by="user"),
    envelope(
        9, "tool_error", tool_name="calculator", tool_call_id="c2", error="rejected", duration_ms=0
    ),
    envelope(
        10,
        "agent_completed",
        status="completed",
        result="done",
        duration_ms=9,
        usage={"input_tokens": 5, "output_tokens": 2},
    ),
]


def translate_all(envelopes):
    translator = Translator()
    return [(e["seq"], translator.translate(e)) for e in envelopes]


def test_every_event_type_maps_to_valid_ag_ui_events():
    mapped = translate_all(STORY)
    types = {e["type"] for e in STORY}
    for _seq, events in mapped:
        for event in events:
            EVENT.validate_json(event.model_dump_json(by_alias=True))
    flat = [(seq, e.type.value) for seq, events in mapped for e in events]
    assert flat[0] == (1, "RUN_STARTED")
    assert (2, "REASONING_MESSAGE_CONTENT") in flat
    # streamed text: one message, ended before the tool call
    assert [t for s, t in flat if s in (3, 4, 5)][:4] == [
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
    ]
    assert [t for s, t in flat if s == 7] == ["RUN_FINISHED"]
    assert [t for s, t in flat if s == 8] == ["RUN_STARTED"]
    # a refused call that never ran still opens and closes before its result
    assert [t for s, t in flat if s == 9] == [
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
    ]
    finished = mapped[-1][1][-1].model_dump(by_alias=True, mode="json")
    assert finished["outcome"] == {"type": "success"}
    assert finished["usage"] == [{"inputTokens": 5, "outputTokens": 2}]
    assert types | {"agent_error", "agent_cancelled"} == set(EVENT_TYPES)


def test_errors_and_cancels():
    error = Translator().translate(
        envelope(2, "agent_error", error={"code": "timeout", "message": "too long"})
    )
    assert [e.model_dump(by_alias=True, mode="json") for e in error] == [
        {"type": "RUN_ERROR", "message": "too long", "code": "timeout"}
    ]
    cancelled = Translator().translate(envelope(2, "agent_cancelled", reason="stopped"))
    assert cancelled[0].model_dump(by_alias=True, mode="json")["outcome"] == {"type": "cancelled"}


def test_an_interrupt_carries_what_the_client_needs_to_answer():
    (finished,) = Translator().translate(STORY[6])
    outcome = finished.model_dump(by_alias=True, mode="json")["outcome"]
    assert outcome["type"] == "interrupt"
    (interrupt,) = outcome["interrupts"]
    assert interrupt["id"] == "in_1" and interrupt["reason"] == "tool_approval"
    assert interrupt["toolCallId"] == "c2" and interrupt["expiresAt"] == "2026-01-01T00:05:00Z"
    assert interrupt["metadata"] == {
        "kind": "tool_approval",
        "tool_name": "calculator",
        "parameters": {"x": 2},
    }


def test_a_primed_translator_continues_an_open_text_message():
    primed = Translator()
    primed.prime(STORY[:3])  # the client saw the message start
    events = primed.translate(STORY[3])
    assert [e.type.value for e in events] == ["TEXT_MESSAGE_CONTENT"]
    assert events[0].message_id == "r1-m3"


def test_sse_puts_the_seq_on_every_event():
    text = sse(5, Translator().translate(STORY[4]))
    blocks = [b for b in text.split("\n\n") if b]
    assert all(b.startswith("id: 5\ndata: ") for b in blocks)
    assert json.loads(blocks[0].split("data: ", 1)[1])["type"] == "TOOL_CALL_START"
