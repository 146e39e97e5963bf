"""What the delivery path does when something fails: never a silent socket, never a leak."""

import asyncio
import json
import logging
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import OperationalError
from prometheus_client import REGISTRY

from agents.events.frames import encode_frame
from agents.events.writer import StoredEvent
from realtime import stream as stream_module
from realtime.closed import SOCKET_GONE
from realtime.hub import LocalHub
from realtime.inbox import ProcessInbox
from realtime.stream import SocketStream
from tests.agents.events.test_emitter import make_run as amake_run
from tests.agents.events.test_emitter import redis_layers
from tests.conftest import connect_user, send, start
from tests.services import require_redis
from tests.streams import Socket, emitted

pytestmark = pytest.mark.django_db(transaction=True)


async def settle(stream, next_seq):
    for _ in range(200):
        if stream.next_seq == next_seq:
            return
        await asyncio.sleep(0.01)


def metric(name):
    return REGISTRY.get_sample_value(name) or 0.0


async def test_events_held_during_a_pause_go_out_when_its_body_raises(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    frames = await emitted(session, await amake_run(user), 3)
    socket = Socket()
    stream = socket.stream(user.pk)
    await stream.start(1)
    with pytest.raises(RuntimeError):
        async with stream.paused():
            await stream.offer(1, frames[1])
            assert socket.seqs == []  # held while paused, even with nothing held before
            raise RuntimeError("the request was refused")
    await stream.offer(2, frames[2])
    await stream.offer(3, frames[3])
    assert socket.seqs == [1, 2, 3]
    assert socket.failures == []


async def test_held_events_go_out_in_order_once_each_without_reading_storage(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    frames = await emitted(session, await amake_run(user), 12)
    socket = Socket()
    stream = socket.stream(user.pk)
    await stream.start(9)
    await stream.offer(9, frames[9])
    fills = metric("chatplatform_gap_fills_total")
    observed = metric("chatplatform_emit_to_socket_seconds_count")
    async with stream.paused():
        # out of order (10 sorts before 9 as text), and one already sent
        for seq in (11, 9, 10, 12):
            await stream.offer(seq, frames[seq], time.time())
    assert socket.seqs == [9, 10, 11, 12]
    assert metric("chatplatform_gap_fills_total") == fills  # all were held: no hole to fill
    assert metric("chatplatform_emit_to_socket_seconds_count") == observed + 3


async def test_live_events_held_during_a_resume_are_not_sent_again(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    frames = await emitted(session, await amake_run(user), 5)
    socket = Socket()
    stream = socket.stream(user.pk)
    await stream.start(1)
    for seq in (1, 2, 3):
        await stream.offer(seq, frames[seq])
    replayed = metric("chatplatform_replayed_events_total")

    async def done(last, recovered):
        # 4 and 5 were stored before the replay read them; their live copies arrive now
        await stream.offer(4, frames[4])
        await stream.offer(5, frames[5])
        socket.seqs.append(("complete", last, recovered))

    count = await stream.resume(0, done)
    assert count == 5
    assert socket.seqs == [1, 2, 3, 1, 2, 3, 4, 5, ("complete", 5, True)]
    await stream.offer(6, encode_frame({"seq": 6}))  # the next live event follows on
    assert socket.seqs[-1] == 6
    assert metric("chatplatform_replayed_events_total") == replayed  # counted by the consumer


async def test_a_socket_gone_during_a_replay_ends_the_replay_quietly(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    await emitted(session, await amake_run(user), 5)
    sent = []

    async def send_then_go(text):
        sent.append(json.loads(text)["seq"])
        stream.close()  # the socket went away after its first replayed frame

    stream = SocketStream(user_id=user.pk, send=send_then_go, on_failure=pytest.fail)
    await stream.start(6)
    completed = []

    async def done(last, recovered):
        completed.append(last)

    assert await stream.resume(0, done) == 1
    assert sent == [1]
    assert completed == [1]


async def test_live_sends_observe_emit_to_socket_latency(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    frames = await emitted(session, await amake_run(user), 1)
    socket = Socket()
    stream = socket.stream(user.pk)
    await stream.start(1)
    count = metric("chatplatform_emit_to_socket_seconds_count")
    total = metric("chatplatform_emit_to_socket_seconds_sum")
    await stream.offer(1, frames[1], time.time() - 0.25)
    assert metric("chatplatform_emit_to_socket_seconds_count") == count + 1
    assert 0.25 <= metric("chatplatform_emit_to_socket_seconds_sum") - total < 0.9


async def test_an_event_held_with_nobody_to_release_it_is_released(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    frames = await emitted(session, await amake_run(user), 2)
    socket = Socket()
    stream = socket.stream(user.pk)
    await stream.start(1)
    stream._held.append((1, frames[1], None))  # left behind by a bug elsewhere
    await stream.offer(2, frames[2])
    await settle(stream, 3)
    assert socket.seqs == [1, 2]


async def test_a_failed_gap_fill_closes_the_socket_so_that_it_resumes(
    amake_user, registry, monkeypatch, caplog
):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    frames = await emitted(session, await amake_run(user), 3)

    async def storage_down(self):
        raise OperationalError("database is gone")
        yield  # an async generator, like the real one

    monkeypatch.setattr(stream_module.Replay, "frames", storage_down)
    socket = Socket()
    stream = socket.stream(user.pk)
    await stream.start(1)
    failures_before = metric("chatplatform_stream_failures_total")
    with caplog.at_level(logging.ERROR, logger="realtime.stream"):
        await stream.offer(3, frames[3])  # 1 and 2 are missing: filled from storage: it fails
        for _ in range(200):
            if socket.failures:
                break
            await asyncio.sleep(0.01)
    [logged] = [r for r in caplog.records if r.name == "realtime.stream"]
    assert logged.getMessage() == (
        f"sending held events failed; closing the socket so that it resumes user_id={user.pk}"
    )
    assert logged.user_id == user.pk and logged.exc_info[0] is OperationalError
    assert [type(f) for f in socket.failures] == [OperationalError]
    assert stream.closed and socket.seqs == []
    assert metric("chatplatform_stream_failures_total") == failures_before + 1
    await stream.offer(1, frames[1])  # nothing more goes to a failed stream
    assert socket.seqs == []


async def test_a_failed_gap_fill_closes_a_real_socket_with_4011(amake_user, registry, monkeypatch):
    from agents.events.store import event_record

    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    ref = await amake_run(user)
    comm, hello = await connect_user(user)
    # stored but never published (a layer outage): the next event shows a hole
    await database_sync_to_async(event_record)(
        user_id=user.pk, run_id=ref.run_id, event_type="partial_result", data={"delta": "lost"}
    )

    async def storage_down(self):
        raise OperationalError("database is gone")
        yield

    monkeypatch.setattr(stream_module.Replay, "frames", storage_down)
    await session.emitter.emit(ref, "partial_result", {"delta": "next"})
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4011}
    assert hello["last_seq"] == 0


async def test_a_closed_socket_is_detached_from_the_hub(amake_user, registry, process):
    user = await amake_user()
    first, _ = await connect_user(user)
    second, _ = await connect_user(user)
    assert len(process.hub.streams_of(user.pk)) == 2
    await first.disconnect()
    assert len(process.hub.streams_of(user.pk)) == 1
    await second.disconnect()
    assert process.hub.streams_of(user.pk) == ()
    assert registry.peek(user.pk).connections == 0


async def test_a_send_to_a_socket_already_closing_is_counted_not_raised(
    amake_user, registry, process
):
    user = await amake_user()
    comm, _ = await connect_user(user)
    consumer_stream = process.hub.streams_of(user.pk)[0]
    gone = SOCKET_GONE[-1]

    async def closing(text):
        raise gone("Attempt to send on a closed protocol")

    before = metric("chatplatform_sends_after_close_total")
    consumer_send = consumer_stream._send
    consumer = consumer_send.__self__
    consumer.base_send = lambda message: closing(message)
    ref = await amake_run(user)
    session = registry.peek(user.pk)
    await session.emitter.emit(ref, "partial_result", {"delta": "into the void"})
    await session.emitter.emit(ref, "partial_result", {"delta": "not even tried"})
    assert metric("chatplatform_sends_after_close_total") == before + 1
    assert consumer_stream.closed and consumer.closing
    await comm.disconnect()
    assert process.hub.streams_of(user.pk) == ()


async def test_a_resume_cursor_past_the_last_event_skips_nothing_later(amake_user, registry):
    user = await amake_user()
    comm, hello = await connect_user(user)
    await send(comm, {"type": "resume", "request_id": "far", "payload": {"after_seq": 1000}})
    done = await comm.receive_json_from(timeout=5)
    assert done["type"] == "resume_complete" and done["last_seq"] == hello["last_seq"]
    accepted = await start(comm, "calculate 6*7")
    first = await comm.receive_json_from(timeout=5)
    assert first["run_id"] == accepted["run_id"] and first["seq"] == hello["last_seq"] + 1
    await comm.disconnect()


async def test_a_fan_out_failure_closes_that_socket_and_spares_the_others(
    amake_user, registry, monkeypatch, process, caplog
):
    user = await amake_user()
    broken, _ = await connect_user(user)
    healthy, _ = await connect_user(user)
    victim = process.hub.streams_of(user.pk)[0]

    async def explode(seq, text, called_at=None):
        raise ValueError("a bug in offer")

    monkeypatch.setattr(victim, "offer", explode)
    ref = await amake_run(user)
    with caplog.at_level(logging.ERROR, logger="realtime.hub"):
        envelope = await registry.peek(user.pk).emitter.emit(ref, "partial_result", {"delta": "x"})
    [logged] = [r for r in caplog.records if r.name == "realtime.hub"]
    assert logged.getMessage() == (
        f"sending seq={envelope['seq']} to a socket failed user_id={user.pk}"
    )
    assert logged.exc_info[0] is ValueError
    outputs = [await c.receive_output(timeout=5) for c in (broken, healthy)]
    closes = [o for o in outputs if o["type"] == "websocket.close"]
    sends = [o for o in outputs if o["type"] == "websocket.send"]
    assert closes == [{"type": "websocket.close", "code": 4011}]
    assert len(sends) == 1 and json.loads(sends[0]["text"])["data"] == {"delta": "x"}
    await broken.disconnect()
    await healthy.disconnect()


class GatedInbox(ProcessInbox):
    """A real inbox whose leave() waits at a gate: a socket can attach meanwhile."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gate = asyncio.Event()
        self.leaving = asyncio.Event()

    async def leave(self, group):
        self.leaving.set()
        await self.gate.wait()
        await super().leave(group)


@pytest.mark.redis
async def test_a_socket_attaching_while_the_last_one_leaves_still_gets_events(amake_user, settings):
    # Found by the protocol soak (two processes): the last tab's detach, while it
    # left the user's group, dropped the entry of a tab attaching meanwhile.
    settings.CHANNEL_LAYERS = redis_layers(require_redis())
    layer = get_channel_layer()
    user = await amake_user()
    inbox = GatedInbox(layer=layer)
    hub = LocalHub(channel_layer=layer, inbox=inbox)
    socket = Socket()
    old = socket.stream(user.pk)
    new = socket.stream(user.pk)
    await hub.attach(old)
    leaving = asyncio.create_task(hub.detach(old))
    await inbox.leaving.wait()
    attaching = asyncio.create_task(hub.attach(new))
    await asyncio.sleep(0.05)
    inbox.gate.set()
    await asyncio.gather(leaving, attaching)
    assert hub.streams_of(user.pk) == (new,)
    # and another process's event for the user reaches the new socket through Redis
    await new.start(1)
    other = LocalHub(channel_layer=layer, inbox=ProcessInbox(layer=layer))
    await other.publish([StoredEvent(user.pk, 1, encode_frame({"seq": 1}), time.time())])
    for _ in range(200):
        if socket.seqs:
            break
        await asyncio.sleep(0.01)
    assert socket.seqs == [1]
    await inbox.close()
    await layer.flush()


class SlowNamingLayer(InMemoryChannelLayer):
    """The in-memory layer, with a new_channel that yields (as Redis's does)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.named = []

    async def new_channel(self, prefix="specific."):
        await asyncio.sleep(0.01)
        name = await super().new_channel(prefix)
        self.named.append(name)
        return name


async def test_first_joins_at_once_share_the_process_channel():
    layer = SlowNamingLayer()
    inbox = ProcessInbox(layer=layer)
    await asyncio.gather(inbox.join("user.1"), inbox.join("process.x"))
    assert len(layer.named) == 1
    await inbox.close()


async def test_a_users_last_socket_leaving_leaves_nothing_behind_in_the_hub(
    amake_user, registry, process
):
    user = await amake_user()
    first, _ = await connect_user(user)
    second, _ = await connect_user(user)
    assert user.pk in process.hub.users()
    process_stream = process.hub.streams_of(user.pk)[0]
    await first.disconnect()
    assert user.pk in process.hub.users()
    await second.disconnect()
    assert user.pk not in process.hub.users()
    await process.hub.detach(process_stream)  # a second detach is harmless
    assert process.hub.users() == []


@pytest.mark.redis
async def test_the_process_listens_to_a_users_group_only_while_it_has_their_sockets(
    amake_user, settings
):
    settings.CHANNEL_LAYERS = redis_layers(require_redis())
    layer = get_channel_layer()
    user, other_user = await amake_user(), await amake_user()
    inbox = ProcessInbox(layer=layer)
    hub = LocalHub(channel_layer=layer, inbox=inbox)
    arrived = []

    async def seen(message):
        arrived.append(message["user_id"])
        await hub._on_events(message)

    inbox.on("agent.event", seen)
    elsewhere = LocalHub(channel_layer=layer, inbox=ProcessInbox(layer=layer))
    socket = Socket()
    stream = socket.stream(user.pk)

    async def published(user_id, seq):
        arrived.clear()
        text = encode_frame({"seq": seq})
        await elsewhere.publish([StoredEvent(user_id, seq, text, time.time() - 0.1)])
        await asyncio.sleep(0.3)
        return list(arrived)

    await inbox.join("process.warm")  # the inbox reads before the user's first socket
    assert await published(user.pk, 1) == []
    await hub.attach(stream)
    await stream.start(2)
    observed = metric("chatplatform_emit_to_socket_seconds_count")
    assert await published(user.pk, 2) == [user.pk]
    assert socket.seqs == [2]
    assert metric("chatplatform_emit_to_socket_seconds_count") == observed + 1
    assert await published(other_user.pk, 1) == []  # another user's group: not joined
    second = socket.stream(user.pk)
    await hub.attach(second)  # a second tab here keeps the group joined
    await second.start(3)
    assert await published(user.pk, 3) == [user.pk]
    assert socket.seqs == [2, 3, 3]
    await hub.detach(second)
    await hub.detach(stream)
    assert await published(user.pk, 4) == []  # left with the last socket
    await hub.detach(stream)  # a second detach (a refused socket) joins nothing
    assert await published(user.pk, 5) == []
    assert hub.users() == []
    await inbox.close()
    await layer.flush()


async def test_leaving_after_the_inbox_closed_opens_no_channel():
    layer = SlowNamingLayer()
    inbox = ProcessInbox(layer=layer)
    await inbox.join("user.1")
    await inbox.close()
    await inbox.leave("user.1")  # a socket detaching while the process stops
    assert len(layer.named) == 1
