"""EventWriter, LocalHub, SocketStream: batched, stored before sent, gapless per socket."""

import asyncio
import gc
import logging
import time
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from prometheus_client import REGISTRY

from agents.events.frames import encode_frame
from agents.events.store import NewEvent
from agents.events.writer import EventWriter, StoredEvent
from agents.models import RunEvent
from realtime.hub import LocalHub
from realtime.inbox import ProcessInbox
from realtime.layers import group_send_many
from realtime.stream import SocketStream
from tests.agents.events.test_emitter import make_run, redis_layers
from tests.conftest import connect_user
from tests.services import require_redis
from tests.streams import Socket

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def stored(user_id):
    return list(
        RunEvent.objects.filter(user_id=user_id).order_by("seq").values_list("seq", "payload")
    )


@database_sync_to_async
def stored_frames(user_id):
    return list(
        RunEvent.objects.filter(user_id=user_id).order_by("seq").values_list("frame", flat=True)
    )


async def test_many_users_share_batches_numbered_in_call_order(amake_user, registry, process):
    users = [await amake_user() for _ in range(5)]
    sessions = [await registry.get_user_session(u.pk) for u in users]
    refs = [await make_run(u) for u in users]
    before = process.writer.batches

    async def emit_many(session, ref):
        return [
            await session.emitter.emit(ref, "partial_result", {"delta": str(i)}) for i in range(50)
        ]

    envelopes = await asyncio.gather(
        *(emit_many(s, r) for s, r in zip(sessions, refs, strict=True))
    )
    # 250 events of 5 concurrent writers took fewer transactions than events
    assert process.writer.batches - before < 250
    for user, sent in zip(users, envelopes, strict=True):
        rows = await stored(user.pk)
        assert [seq for seq, _ in rows] == list(range(1, 51))
        assert [payload["delta"] for _, payload in rows] == [str(i) for i in range(50)]
        # the stored frame is exactly what was sent live
        assert await stored_frames(user.pk) == [encode_frame(e) for e in sent]


async def test_an_event_is_stored_before_it_is_published(amake_user):
    user = await amake_user()
    ref = await make_run(user)
    seen_in_db = []

    async def publish(events: list[StoredEvent]) -> None:
        for event in events:
            rows = await stored(event.user_id)
            seen_in_db.append(event.seq in [seq for seq, _ in rows])

    writer = EventWriter(publish=publish)
    await asyncio.gather(
        *(
            writer.write(ref, NewEvent(user.pk, ref.run_id, "partial_result", {"delta": "x"}), 0.0)
            for _ in range(20)
        )
    )
    assert seen_in_db == [True] * 20
    await database_sync_to_async(writer.close)()


async def test_each_batch_is_measured_for_ops(amake_user):
    user = await amake_user()
    ref = await make_run(user)

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    names = [
        "chatplatform_event_batch_size_sum",
        "chatplatform_event_batch_size_count",
        "chatplatform_event_batch_seconds_count",
        "chatplatform_event_batch_wait_seconds_count",
    ]
    before = {name: sample(name) for name in names}
    writer = EventWriter(publish=lambda events: asyncio.sleep(0))
    event = NewEvent(user.pk, ref.run_id, "partial_result", {"delta": "x"})
    await asyncio.gather(*(writer.write(ref, event, time.time()) for _ in range(5)))
    await writer.write(ref, event, time.time() - 60)  # waited a minute before it was written
    grew = {name: sample(name) - before[name] for name in names}
    assert grew["chatplatform_event_batch_size_sum"] == 6
    batches = grew["chatplatform_event_batch_size_count"]
    assert batches == writer.batches >= 2
    assert grew["chatplatform_event_batch_seconds_count"] == batches
    assert grew["chatplatform_event_batch_wait_seconds_count"] == batches
    assert REGISTRY.get_sample_value(
        "chatplatform_event_batch_wait_seconds_bucket", {"le": "2.5"}
    ) < sample("chatplatform_event_batch_wait_seconds_count")  # the minute-old one is over
    await database_sync_to_async(writer.close)()


# A run change run_finish() rejects: the event carrying it fails to store.
BAD_CHANGE = {"status": "completed", "no_such_field": 1}


async def publishing_writer(amake_user):
    """A writer for a new user's run, the seqs it publishes, and a partial_result maker."""
    user = await amake_user()
    ref = await make_run(user)
    published: list[int] = []

    async def publish(events: list[StoredEvent]) -> None:
        published.extend(event.seq for event in events)

    def event(delta, run_change=None):
        return NewEvent(user.pk, ref.run_id, "partial_result", {"delta": delta}, run_change)

    return user, ref, EventWriter(publish=publish), published, event


async def test_a_failing_event_fails_alone_and_takes_no_seq(amake_user):
    user, ref, writer, published, event = await publishing_writer(amake_user)
    results = await asyncio.gather(
        writer.write(ref, event("a"), 0.0),
        writer.write(ref, event("b", BAD_CHANGE), 0.0),
        writer.write(ref, event("c"), 0.0),
        return_exceptions=True,
    )
    assert isinstance(results[1], TypeError)
    assert [r["data"]["delta"] for r in (results[0], results[2])] == ["a", "c"]
    assert [seq for seq, _ in await stored(user.pk)] == [1, 2] == published
    await database_sync_to_async(writer.close)()


async def test_a_batch_whose_outcome_is_unknown_fails_whole_and_is_not_stored_again(
    amake_user, monkeypatch, caplog
):
    # A connection lost during COMMIT, whose server process would not end: the batch
    # may have committed (here it did), so its events are not stored one by one again.
    from agents.events import writer as writer_module
    from agents.events.store import OutcomeUnknown

    user, ref, writer, published, event = await publishing_writer(amake_user)
    real = writer_module._record

    def committed_then_unknown(batch):
        real(batch)
        raise OutcomeUnknown("lost during COMMIT")

    monkeypatch.setattr(writer_module, "_record", committed_then_unknown)
    with caplog.at_level(logging.CRITICAL, logger="agents.events.writer"):
        results = await asyncio.gather(
            *(writer.write(ref, event(d), 0.0) for d in "abc"), return_exceptions=True
        )
    assert all(isinstance(r, OutcomeUnknown) for r in results), results
    assert [seq for seq, _ in await stored(user.pk)] == [1, 2, 3] and published == []
    monkeypatch.undo()
    assert (await writer.write(ref, event("d"), 0.0))["seq"] == 4
    await database_sync_to_async(writer.close)()


async def test_a_failing_enqueued_event_is_logged_and_fails_alone(amake_user, caplog):
    user, ref, writer, published, event = await publishing_writer(amake_user)
    unretrieved = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unretrieved.append(context))
    with caplog.at_level(logging.ERROR, logger="agents.events.writer"):
        await writer.enqueue(ref, event("a"), 0.0)
        await writer.enqueue(ref, event("b", BAD_CHANGE), 0.0)
        await writer.enqueue(ref, event("c"), 0.0)
        last = await asyncio.wait_for(writer.write(ref, event("d"), 0.0), 10)
    assert last["seq"] == 3
    assert [seq for seq, _ in await stored(user.pk)] == [1, 2, 3] == published
    failures = [r for r in caplog.records if "storing a partial_result event failed" in r.message]
    assert len(failures) == 1 and isinstance(failures[0].exc_info[1], TypeError)
    gc.collect()  # an unretrieved future's exception is reported when it is collected
    assert unretrieved == []
    await database_sync_to_async(writer.close)()


async def test_a_cancelled_emitter_still_has_its_event_stored_and_sent(amake_user, registry):
    user = await amake_user()
    comm, hello = await connect_user(user)
    session = await registry.get_user_session(user.pk)
    ref = await make_run(user)
    task = asyncio.create_task(session.emitter.emit(ref, "partial_result", {"delta": "kept"}))
    await asyncio.sleep(0)
    task.cancel()
    frame = await comm.receive_json_from(timeout=5)
    assert frame["seq"] == hello["last_seq"] + 1 and frame["data"] == {"delta": "kept"}
    assert len(await stored(user.pk)) == 1
    await comm.disconnect()


async def test_stream_fills_holes_from_storage_and_never_repeats(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    ref = await make_run(user)
    frames = {}
    for i in range(1, 9):
        envelope = await session.emitter.emit(ref, "partial_result", {"delta": str(i)})
        frames[envelope["seq"]] = encode_frame(envelope)
    socket = Socket()
    stream = socket.stream(user.pk)
    await stream.offer(2, frames[2])  # before the start: held
    await stream.start(2)
    await stream.offer(1, frames[1])  # before the start point: dropped
    await stream.offer(5, frames[5])  # a hole (3, 4): filled from storage
    await stream.offer(3, frames[3])  # already sent by the fill
    for _ in range(100):
        if stream.next_seq == 6:
            break
        await asyncio.sleep(0.01)
    async with stream.paused():
        await stream.offer(7, frames[7])  # held while paused; 6 is a hole again
        assert socket.seqs == [2, 3, 4, 5]
    await stream.offer(8, frames[8])
    for _ in range(100):
        if stream.next_seq == 9:
            break
        await asyncio.sleep(0.01)
    assert socket.seqs == [2, 3, 4, 5, 6, 7, 8]
    assert socket.failures == []


class OfferCounting(SocketStream):
    """A real SocketStream that also records every seq the hub offers it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.offered = []

    async def offer(self, seq, text, called_at=None):
        self.offered.append(seq)
        await super().offer(seq, text, called_at)


@pytest.mark.redis
async def test_two_processes_hubs_share_events_once_each(amake_user, settings):
    url = require_redis()
    settings.CHANNEL_LAYERS = redis_layers(url)
    user = await amake_user()
    ref = await make_run(user)
    layer = get_channel_layer()
    # Two hubs on the one Redis: two processes as far as delivery is concerned.
    inbox_a, inbox_b = ProcessInbox(layer=layer), ProcessInbox(layer=layer)
    hub_a = LocalHub(channel_layer=layer, inbox=inbox_a)
    hub_b = LocalHub(channel_layer=layer, inbox=inbox_b)
    writer = EventWriter(publish=hub_a.publish)
    sockets, streams = {}, {}
    for name, hub in (("a1", hub_a), ("a2", hub_a), ("b1", hub_b)):
        sockets[name] = Socket()
        stream = streams[name] = OfferCounting(
            user_id=user.pk, send=sockets[name].send, on_failure=print
        )
        await hub.attach(stream)
        await stream.start(1)
    for i in range(30):
        await writer.write(
            ref, NewEvent(user.pk, ref.run_id, "partial_result", {"delta": str(i)}), 0.0
        )
    for _ in range(200):
        if len(sockets["b1"].seqs) == 30:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # any echo of a's own events would have come back by now
    for socket in sockets.values():
        assert socket.seqs == list(range(1, 31))
    # each hub handed each event to its sockets once: a's own events coming back
    # from Redis were dropped by the hub, not left to the sockets' seq check
    for stream in streams.values():
        assert stream.offered == list(range(1, 31))
    await inbox_a.close()
    await inbox_b.close()
    await database_sync_to_async(writer.close)()
    await layer.flush()


def test_the_process_refuses_to_run_without_a_layer(settings):
    settings.CHANNEL_LAYERS = {}
    from channels.layers import channel_layers

    from chatplatform.process import build_process

    channel_layers.backends.clear()
    with pytest.raises(ValueError, match="channel layer"):
        build_process()
    hub_needs = r"^the hub needs a channel layer \(CHANNEL_LAYERS\['default'\]\)$"
    with pytest.raises(ValueError, match=hub_needs):
        LocalHub(channel_layer=None, inbox=None)  # type: ignore[arg-type]


async def test_streamed_events_keep_their_place_before_a_later_emit(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    ref = await make_run(user)
    for i in range(100):
        await session.emitter.stream(ref, "partial_result", {"delta": str(i)})
    last = await session.emitter.emit(
        ref, "agent_thinking", {"reasoning": "r", "step": 1, "progress": 0.5}
    )
    # once the later emit returns, every streamed event before it is stored, in order
    rows = await stored(user.pk)
    assert [seq for seq, _ in rows] == list(range(1, 102)) and last["seq"] == 101
    assert [p["delta"] for _, p in rows[:100]] == [str(i) for i in range(100)]


async def test_enqueue_waits_once_the_queue_is_over_its_bound(amake_user):
    user = await amake_user()
    ref = await make_run(user)
    gate = asyncio.Event()

    async def publish(events: list[StoredEvent]) -> None:
        await gate.wait()  # a publisher that cannot keep up

    writer = EventWriter(publish=publish, max_queue=5)
    event = NewEvent(user.pk, ref.run_id, "partial_result", {"delta": "x"})
    for _ in range(6):  # the first batch is taken, then the queue fills to its bound
        await asyncio.wait_for(writer.enqueue(ref, event, 0.0), 5)
        await asyncio.sleep(0.05)
    blocked = asyncio.create_task(writer.enqueue(ref, event, 0.0))
    await asyncio.sleep(0.3)
    assert not blocked.done()
    gate.set()
    await asyncio.wait_for(blocked, 10)
    assert len(await stored(user.pk)) == 7
    await database_sync_to_async(writer.close)()


async def sent_through_group_send_many(layer):
    """Send 300 messages to 3 groups in one call; return what each group's channel received."""
    groups = [f"user.{uuid.uuid4().int % 10**9}" for _ in range(3)]
    channels = [await layer.new_channel() for _ in groups]
    for group, channel in zip(groups, channels, strict=True):
        await layer.group_add(group, channel)
    messages = [(groups[i % 3], {"type": "agent.event", "n": i}) for i in range(300)]
    await group_send_many(layer, messages)
    received = []
    for channel in channels:
        got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(100)]
        received.append(got)
    return received


async def test_group_send_many_keeps_each_groups_order_in_memory():
    received = await sent_through_group_send_many(get_channel_layer())
    assert received == [list(range(k, 300, 3)) for k in range(3)]


@pytest.mark.redis
async def test_group_send_many_pipelined_on_redis_keeps_each_groups_order(settings):
    settings.CHANNEL_LAYERS = redis_layers(require_redis())
    layer = get_channel_layer()
    received = await sent_through_group_send_many(layer)
    assert received == [list(range(k, 300, 3)) for k in range(3)]
    await layer.flush()


ODD_DATA = {
    "text": 'naïve 😀 \u2028 "quoted" \\ back',
    "nested": {"list": [1, 2.5, None, True], "empty": {}},
    "number": 10**20,
}


def test_a_frame_with_its_data_encoded_once_is_the_envelope_encoded_whole():
    from datetime import UTC, datetime

    from agents.events.frames import RunRef, encode_data, envelope_frame, event_envelope

    run = RunRef(run_id=uuid.uuid4().hex, thread_id=uuid.uuid4().hex, agent_name="triage")
    at = datetime(2026, 11, 26, 13, 0, 0, 123456, tzinfo=UTC)
    envelope = event_envelope(run, "partial_result", 7, at, ODD_DATA)
    assert envelope_frame(envelope, encode_data(ODD_DATA)) == encode_frame(envelope)


async def test_the_stored_payload_reads_back_as_the_data(amake_user):
    # The payload column is written from the frame's JSON text (jsonb on PostgreSQL).
    user = await amake_user()
    run = await make_run(user)

    async def publish(events):
        pass

    writer = EventWriter(publish=publish)
    try:
        await writer.write(run, NewEvent(user.pk, run.run_id, "partial_result", ODD_DATA), 0.0)
    finally:
        writer.close()
    assert await stored(user.pk) == [(1, ODD_DATA)]


def writer_task(before: set[asyncio.Task]) -> asyncio.Task:
    """The event writer's task started since `before` was taken."""
    (task,) = [t for t in asyncio.all_tasks() - before if t.get_name() == "event-writer"]
    return task


async def test_a_writer_stopped_while_storing_tells_every_waiting_writer(
    amake_user, monkeypatch, caplog
):
    import threading

    from agents.events import writer as writer_module

    user = await amake_user()
    ref = await make_run(user)
    started, release = threading.Event(), threading.Event()
    real_store = writer_module._store

    def slow_store(batch):
        started.set()
        release.wait(10)
        return real_store(batch)

    monkeypatch.setattr(writer_module, "_store", slow_store)
    writer = EventWriter(publish=lambda events: asyncio.sleep(0))
    event = NewEvent(user.pk, ref.run_id, "partial_result", {"delta": "x"})
    before = asyncio.all_tasks()
    in_hand = asyncio.create_task(writer.write(ref, event, 0.0))
    await asyncio.to_thread(started.wait, 5)
    queued = asyncio.create_task(writer.write(ref, event, 0.0))
    await asyncio.sleep(0.05)
    writer_task(before).cancel()
    with pytest.raises(RuntimeError, match="it may be stored"):
        await asyncio.wait_for(in_hand, 5)
    with pytest.raises(RuntimeError, match=r"^event writer stopped$"):
        await asyncio.wait_for(queued, 5)
    assert "1 queued events not stored, 1 being stored" in caplog.text
    release.set()
    await database_sync_to_async(writer.close)()
    assert [seq for seq, _ in await stored(user.pk)] == [1]  # the batch in hand did commit


async def test_a_writer_stopped_while_publishing_returns_what_it_stored(amake_user):
    user = await amake_user()
    ref = await make_run(user)
    publishing = asyncio.Event()

    async def publish(events: list[StoredEvent]) -> None:
        publishing.set()
        await asyncio.Event().wait()  # never returns

    writer = EventWriter(publish=publish)
    event = NewEvent(user.pk, ref.run_id, "partial_result", {"delta": "x"})
    before = asyncio.all_tasks()
    in_hand = asyncio.create_task(writer.write(ref, event, 0.0))
    await asyncio.wait_for(publishing.wait(), 5)
    queued = asyncio.create_task(writer.write(ref, event, 0.0))
    await asyncio.sleep(0.05)
    writer_task(before).cancel()
    assert (await asyncio.wait_for(in_hand, 5))["seq"] == 1
    with pytest.raises(RuntimeError, match=r"^event writer stopped$"):
        await asyncio.wait_for(queued, 5)
    await database_sync_to_async(writer.close)()
    assert [seq for seq, _ in await stored(user.pk)] == [1]
