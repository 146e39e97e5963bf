"""Every error code of the protocol, with request_id echoed and the socket kept open."""

import json
import uuid

import pytest

from tests.conftest import connect_user, send, start

pytestmark = pytest.mark.django_db(transaction=True)


async def expect_error(comm, code, request_id=None):
    reply = await comm.receive_json_from(timeout=5)
    assert reply["type"] == "error", reply
    assert reply["request_id"] == request_id
    assert reply["error"]["code"] == code
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    return reply


async def still_open(comm):
    await send(comm, {"type": "ping", "request_id": "p"})
    pong = await comm.receive_json_from(timeout=5)
    assert pong["type"] == "pong" and pong["request_id"] == "p"


@pytest.mark.parametrize(
    ("text", "code", "request_id"),
    [
        ("{not json", "invalid_json", None),
        ("", "invalid_json", None),
        ("[1, 2]", "invalid_message", None),
        ('"start_agent"', "invalid_message", None),
        ("{}", "invalid_message", None),
        ('{"type": 7}', "invalid_message", None),
        ('{"type": "ping", "request_id": 5}', "invalid_message", None),
        ('{"type": "start_agent", "request_id": "a", "payload": []}', "invalid_message", "a"),
        ('{"type": "start_agent", "request_id": "b", "payload": {}}', "invalid_message", "b"),
        (
            '{"type": "start_agent", "request_id": "c", "payload": {"message": "  "}}',
            "invalid_message",
            "c",
        ),
        (
            '{"type":"start_agent","request_id":"d","payload":{"message":"x","options":[1]}}',
            "invalid_message",
            "d",
        ),
        (
            '{"type":"start_agent","request_id":"e","payload":{"message":"x","thread_id":"nope"}}',
            "invalid_message",
            "e",
        ),
        (
            '{"type":"start_agent","request_id":"f","payload":{"message":"x","on_busy":"wait"}}',
            "invalid_message",
            "f",
        ),
        (
            '{"type":"start_agent","request_id":"g","payload":'
            '{"agent":"stepper","message":"x","options":{"steps":101}}}',
            "invalid_message",
            "g",
        ),
        (
            '{"type":"start_agent","request_id":"h","payload":'
            '{"agent":"stepper","message":"x","options":{"delay_ms":-1}}}',
            "invalid_message",
            "h",
        ),
        (
            '{"type":"start_agent","request_id":"i","payload":'
            '{"agent":"triage","message":"x","options":{"temperature":1}}}',
            "invalid_message",
            "i",
        ),
        ('{"type": "user_message", "request_id": "j", "payload": {}}', "invalid_message", "j"),
        ('{"type": "stop_agent", "request_id": "k", "payload": {}}', "invalid_message", "k"),
        (
            '{"type": "resume", "request_id": "l", "payload": {"after_seq": -1}}',
            "invalid_message",
            "l",
        ),
        (
            '{"type": "resume", "request_id": "m", "payload": {"after_seq": "1"}}',
            "invalid_message",
            "m",
        ),
        ('{"type": "dance", "request_id": "n"}', "unknown_type", "n"),
        (
            '{"type":"start_agent","request_id":"o","payload":{"agent":"nobody","message":"x"}}',
            "unknown_agent",
            "o",
        ),
        (
            '{"type":"stop_agent","request_id":"p","payload":{"run_id":"no-such-run"}}',
            "not_found",
            "p",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
async def test_bad_frame_gets_its_error_and_the_socket_stays_open(
    amake_user, registry, text, code, request_id
):
    comm, _ = await connect_user(await amake_user())
    # send_input: the communicator's send_to refuses an empty text frame.
    await comm.send_input({"type": "websocket.receive", "text": text})
    await expect_error(comm, code, request_id)
    await still_open(comm)
    await comm.disconnect()


async def test_binary_frame_is_invalid_message(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    await comm.send_to(bytes_data=b"\x00\x01")
    await expect_error(comm, "invalid_message")
    await still_open(comm)
    await comm.disconnect()


async def test_disabled_agent_is_unknown(amake_user, registry):
    from agents.models import Agent

    await Agent.objects.filter(name="stepper").aupdate(enabled=False)
    comm, _ = await connect_user(await amake_user())
    await send(
        comm,
        {"type": "start_agent", "request_id": "q", "payload": {"agent": "stepper", "message": "x"}},
    )
    await expect_error(comm, "unknown_agent", "q")
    await comm.disconnect()


async def test_another_users_thread_is_not_found(amake_user, registry):
    alice, bob = await amake_user(), await amake_user()
    alice_tab, _ = await connect_user(alice)
    accepted = await start(alice_tab, "calculate 2+2")
    bob_tab, _ = await connect_user(bob)
    await send(
        bob_tab,
        {
            "type": "start_agent",
            "request_id": "steal",
            "payload": {"message": "x", "thread_id": accepted["thread_id"]},
        },
    )
    await expect_error(bob_tab, "not_found", "steal")
    await send(
        bob_tab,
        {
            "type": "start_agent",
            "request_id": "ghost",
            "payload": {"message": "x", "thread_id": str(uuid.uuid4())},
        },
    )
    await expect_error(bob_tab, "not_found", "ghost")
    await alice_tab.disconnect()
    await bob_tab.disconnect()


async def test_another_users_run_is_not_found(amake_user, registry):
    alice, bob = await amake_user(), await amake_user()
    alice_tab, _ = await connect_user(alice)
    accepted = await start(alice_tab, "go", agent="stepper", options={"steps": 20, "delay_ms": 50})
    bob_tab, _ = await connect_user(bob)
    await send(
        bob_tab,
        {"type": "stop_agent", "request_id": "s", "payload": {"run_id": accepted["run_id"]}},
    )
    await expect_error(bob_tab, "not_found", "s")
    await registry.shutdown()
    await alice_tab.disconnect()
    await bob_tab.disconnect()


async def test_thread_busy_when_rejecting(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    accepted = await start(comm, "go", agent="stepper", options={"steps": 20, "delay_ms": 50})
    await send(
        comm,
        {
            "type": "start_agent",
            "request_id": "busy",
            "payload": {"message": "x", "thread_id": accepted["thread_id"], "on_busy": "reject"},
        },
    )
    reply = await comm.receive_json_from(timeout=5)
    while reply["type"] != "error":  # skip the first run's events
        reply = await comm.receive_json_from(timeout=5)
    assert reply["error"]["code"] == "thread_busy" and reply["request_id"] == "busy"
    await registry.shutdown()
    await comm.disconnect()


async def test_too_many_runs(amake_user, registry, settings):
    settings.AGENT_MAX_CONCURRENT_RUNS = 2
    comm, _ = await connect_user(await amake_user())
    for _ in range(2):
        await start(comm, "go", agent="stepper", options={"steps": 50, "delay_ms": 100})
    await send(
        comm,
        {
            "type": "start_agent",
            "request_id": "third",
            "payload": {"agent": "stepper", "message": "x"},
        },
    )
    reply = await comm.receive_json_from(timeout=5)
    while reply["type"] != "error":
        reply = await comm.receive_json_from(timeout=5)
    assert reply["error"]["code"] == "too_many_runs" and reply["request_id"] == "third"
    await registry.shutdown()
    await comm.disconnect()


async def test_rate_limited_with_retry_after(amake_user, registry, settings):
    settings.WS_START_RATE_BURST = 2
    settings.WS_START_RATE_PER_SECOND = 0.5
    comm, _ = await connect_user(await amake_user())
    for _ in range(2):
        await send(comm, {"type": "ping"})
        await comm.receive_json_from(timeout=5)
    accepted = [await start(comm, "calculate 1+1"), await start(comm, "calculate 1+2")]
    assert len(accepted) == 2
    await send(comm, {"type": "start_agent", "request_id": "fast", "payload": {"message": "1+3"}})
    reply = await comm.receive_json_from(timeout=5)
    while reply["type"] != "error":
        reply = await comm.receive_json_from(timeout=5)
    assert reply["request_id"] == "fast"
    assert reply["error"]["code"] == "rate_limited"
    assert 0 < reply["error"]["retry_after"] <= 2
    await comm.disconnect()


async def test_message_too_large(amake_user, registry, settings):
    settings.WS_MAX_MESSAGE_CHARS = 100
    comm, _ = await connect_user(await amake_user())
    await send(comm, {"type": "user_message", "request_id": "big", "payload": {"text": "x" * 101}})
    await expect_error(comm, "message_too_large", "big")
    await still_open(comm)
    await comm.disconnect()


async def test_frame_over_the_size_limit_is_answered_then_closed_4009(
    amake_user, registry, settings
):
    settings.WS_MAX_FRAME_BYTES = 1024
    comm, _ = await connect_user(await amake_user())
    await comm.send_to(text_data=json.dumps({"type": "ping", "pad": "é" * 600}))
    refused = await comm.receive_json_from(timeout=5)
    assert refused["type"] == "error" and refused["error"]["code"] == "message_too_large"
    closed = await comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4009}


async def test_user_message_runs_the_default_agent(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    await send(
        comm, {"type": "user_message", "request_id": "u1", "payload": {"text": "calculate 3*3"}}
    )
    reply = await comm.receive_json_from(timeout=5)
    assert reply["type"] == "run_accepted" and reply["request_id"] == "u1"
    events = []
    while not events or events[-1]["type"] != "agent_completed":
        events.append(await comm.receive_json_from(timeout=5))
    assert events[0]["agent_name"] == "triage"
    assert events[-1]["data"]["result"] == "3*3 = 9"
    await comm.disconnect()


async def test_ping_answers_pong_with_server_time(amake_user, registry):
    comm, _ = await connect_user(await amake_user())
    await send(comm, {"type": "ping", "request_id": "hb"})
    pong = await comm.receive_json_from(timeout=5)
    assert set(pong) == {"type", "request_id", "server_time"}
    assert pong["server_time"].endswith("Z")
    await comm.disconnect()


async def test_a_misconfigured_agent_is_unavailable_in_plain_words(amake_user, registry, caplog):
    from agents.models import Agent

    await Agent.objects.acreate(name="broken", implementation="agents.runtime.gone.Agent")
    comm, _ = await connect_user(await amake_user())
    await send(
        comm,
        {"type": "start_agent", "request_id": "b", "payload": {"agent": "broken", "message": "hi"}},
    )
    reply = await comm.receive_json_from(timeout=5)
    assert reply["error"]["code"] == "unknown_agent"
    message = reply["error"]["message"]
    assert message.startswith("this agent is not available right now (reference ")
    assert "agents.runtime" not in message
    ref = message.rsplit(" ", 1)[1].rstrip(")")
    assert any(
        f"ref={ref}" in r.getMessage() and "agents.runtime.gone" in r.getMessage()
        for r in caplog.records
    )
    await comm.disconnect()
