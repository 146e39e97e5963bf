"""Fuzzing the consumer: any frame gets a well-formed reply; bad ones store and close nothing."""

import json

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.events.schema import TERMINAL_TYPES
from agents.models import Run, RunEvent, Thread
from tests.conftest import open_socket, serve_new_process

pytestmark = pytest.mark.django_db(transaction=True)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
client_types = st.sampled_from(
    ["start_agent", "user_message", "stop_agent", "resume", "ping", "nope", ""]
)
framed = st.fixed_dictionaries(
    {"type": client_types},
    optional={
        "request_id": json_values,
        "payload": json_values
        | st.dictionaries(
            st.sampled_from(
                [
                    "agent",
                    "message",
                    "text",
                    "thread_id",
                    "options",
                    "on_busy",
                    "run_id",
                    "after_seq",
                ]
            ),
            json_values,
        ),
    },
)
frames = st.one_of(
    st.text(max_size=300),
    json_values.map(json.dumps),
    framed.map(json.dumps),
)
REPLY_TYPES = {"error", "run_accepted", "pong", "resume_complete"}


def counts():
    return Run.objects.count(), RunEvent.objects.count(), Thread.objects.count()


async def exchange(token, text):
    """Send one frame on a fresh socket; return its reply, then check the socket is open."""
    comm = await open_socket(token)
    hello = await comm.receive_json_from(timeout=10)
    assert hello["type"] == "connection_established"
    await comm.send_input({"type": "websocket.receive", "text": text})
    reply = await comm.receive_json_from(timeout=10)
    replay = []
    while reply["type"] not in REPLY_TYPES:
        assert "seq" in reply, reply  # only agent events may come before the reply (a replay)
        replay.append(reply)
        reply = await comm.receive_json_from(timeout=10)
    if reply["type"] == "run_accepted":  # the fuzzer found a valid request: let the run end
        while True:
            event = await comm.receive_json_from(timeout=30)
            if event.get("run_id") == reply["run_id"] and event["type"] in TERMINAL_TYPES:
                break
    await comm.send_json_to({"type": "ping", "request_id": "still-open"})
    pong = await comm.receive_json_from(timeout=10)
    while pong.get("request_id") != "still-open":
        pong = await comm.receive_json_from(timeout=10)
    await comm.disconnect()
    return reply


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=frames)
def test_any_frame_gets_a_well_formed_reply_and_invalid_ones_store_nothing(make_user, text):
    user = make_user()
    served = serve_new_process()  # each example runs in its own event loop
    before = counts()
    reply = async_to_sync(exchange)(user.token, text)
    async_to_sync(served.registry.shutdown)()
    assert reply["type"] in REPLY_TYPES
    if reply["type"] == "error":
        assert set(reply) == {"type", "request_id", "error"}
        assert reply["error"]["code"] in {
            "invalid_json",
            "invalid_message",
            "unknown_type",
            "unknown_agent",
            "not_found",
            "thread_busy",
            "rate_limited",
            "too_many_runs",
            "message_too_large",
        }
        assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
        assert counts() == before  # nothing stored for invalid input


def test_others_are_still_served_after_the_fuzzing(make_user, process):
    async def run_once(token):
        comm = await open_socket(token)
        await comm.receive_json_from(timeout=10)
        await comm.send_json_to({"type": "start_agent", "payload": {"message": "calculate 6*7"}})
        assert (await comm.receive_json_from(timeout=10))["type"] == "run_accepted"
        while (event := await comm.receive_json_from(timeout=10))["type"] != "agent_completed":
            pass
        await comm.disconnect()
        return event["data"]["result"]

    assert async_to_sync(run_once)(make_user().token) == "6*7 = 42"
    async_to_sync(process.registry.shutdown)()
