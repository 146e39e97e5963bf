"""The outbox: events for other processes go in order, off the writer's path, bounded."""

import asyncio
import contextlib
import logging
import time
import uuid

import pytest
from channels.layers import InMemoryChannelLayer
from prometheus_client import REGISTRY

from agents.events.frames import encode_frame
from agents.events.writer import StoredEvent
from chatplatform.process import build_process
from realtime.groups import user_group
from realtime.hub import LocalHub
from realtime.inbox import ProcessInbox
from realtime.layers import PipelinedPubSubChannelLayer
from realtime.outbox import RemoteOutbox
from tests.services import require_redis
from tests.streams import Socket

# A send that waits where it must not hangs at a gate: fail then, not after 300 s.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(20)]


class GatedLayer(InMemoryChannelLayer):
    """The in-memory layer whose sends wait at a gate, recording the messages as they go."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.sent: list[int] = []
        self.sending = asyncio.Event()  # set once a send waits at the gate
        self.fail_first = fail_first

    async def group_send(self, group, message):
        self.sending.set()
        await self.gate.wait()
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("redis went away")
        self.sent.append(message["n"])


def message(n, user=7, seqs=(1,)):
    return (user_group(user), {"user_id": user, "n": n, "events": [(s, "{}", 0.0) for s in seqs]})


async def test_messages_go_out_in_the_order_they_were_put_while_a_send_is_in_flight():
    layer = GatedLayer()
    outbox = RemoteOutbox(layer)
    # Returns at once: nothing waits for the layer.
    await asyncio.wait_for(outbox.put([message(0)], 1), 5)
    await layer.sending.wait()  # the sender holds message 0 at the gate
    before = REGISTRY.get_sample_value("chatplatform_outbox_events")
    for n in range(1, 50):
        await outbox.put([message(n, user=n % 3)], 1)
    assert layer.sent == []
    assert REGISTRY.get_sample_value("chatplatform_outbox_events") == before + 49
    layer.gate.set()
    await outbox.drain()
    assert layer.sent == list(range(50))
    assert REGISTRY.get_sample_value("chatplatform_outbox_events") == before - 1


async def test_a_full_outbox_makes_put_wait_until_the_sender_takes_the_queue():
    layer = GatedLayer()
    outbox = RemoteOutbox(layer, max_events=3)
    await outbox.put([message(0, seqs=(1, 2))], 2)
    await layer.sending.wait()  # message 0 taken; the queue is empty again
    await outbox.put([message(1, seqs=(3, 4))], 2)  # 2 queued: under the bound
    third = asyncio.create_task(outbox.put([message(2, seqs=(5, 6))], 2))  # 4 queued: over it
    for _ in range(20):
        await asyncio.sleep(0)
    assert not third.done()
    layer.gate.set()  # message 0 goes, the sender takes 1 and 2: the put returns
    await asyncio.wait_for(third, 5)
    await outbox.drain()
    assert layer.sent == [0, 1, 2]


async def sender_dies_while(waiter: asyncio.Task, outbox: RemoteOutbox) -> None:
    """Check that `waiter` waits, then cancel the outbox's sender mid-send (its message dropped)."""
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiter.done()
    sender = outbox._task
    assert sender is not None
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender


async def test_a_put_waiting_for_room_is_released_by_the_sender_that_replaces_a_dead_one():
    layer = GatedLayer()
    outbox = RemoteOutbox(layer, max_events=1)
    await outbox.put([message(0)], 1)
    await layer.sending.wait()  # the sender holds message 0 at the gate
    await outbox.put([message(1)], 1)
    waiting = asyncio.create_task(outbox.put([message(2)], 1))  # over the bound: waits
    await sender_dies_while(waiting, outbox)
    layer.gate.set()
    await asyncio.wait_for(outbox.put([message(3)], 1), 5)  # a new sender takes 1, 2, 3
    await asyncio.wait_for(waiting, 5)
    await outbox.drain()
    assert layer.sent == [1, 2, 3]


async def test_a_drain_when_the_sender_died_mid_send_sends_what_is_left_and_returns():
    layer = GatedLayer()
    outbox = RemoteOutbox(layer)
    await outbox.put([message(0)], 1)
    await layer.sending.wait()  # the sender holds message 0 at the gate
    await outbox.put([message(1)], 1)
    draining = asyncio.create_task(outbox.drain())
    await sender_dies_while(draining, outbox)
    layer.gate.set()
    await asyncio.wait_for(draining, 5)  # a new sender took message 1
    assert layer.sent == [1]
    await asyncio.wait_for(outbox.drain(), 5)


async def test_a_failed_send_is_counted_and_logged_and_the_sends_after_it_go(caplog):
    layer = GatedLayer(fail_first=1)
    outbox = RemoteOutbox(layer)
    before = REGISTRY.get_sample_value("chatplatform_delivery_failures_total") or 0.0
    with caplog.at_level(logging.ERROR, logger="realtime.hub"):
        await outbox.put([message(0, user=7, seqs=(3, 4)), message(1, user=9, seqs=(1,))], 3)
        await layer.sending.wait()
        await outbox.put([message(2, user=7, seqs=(5,))], 1)
        layer.gate.set()
        await outbox.drain()
    assert REGISTRY.get_sample_value("chatplatform_delivery_failures_total") == before + 3
    [logged] = [r for r in caplog.records if r.name == "realtime.hub"]
    assert logged.getMessage() == (
        "live delivery failed (user_id=7 seq=3..4, user_id=9 seq=1..1); events kept for resume"
    )
    assert (logged.user_id, logged.seq) == (7, 3)
    assert layer.sent == [2]  # the failed send (messages 0 and 1) did not stop the next


class GatedRedisLayer(PipelinedPubSubChannelLayer):
    """The project's Redis layer whose pipelined sends wait at a gate."""

    gate: asyncio.Event

    async def group_send_many(self, messages):
        await self.gate.wait()
        await super().group_send_many(messages)


def redis_pair():
    """Return a gated sending layer and a plain receiving one on the same Redis and prefix."""
    config = {"hosts": [require_redis()], "prefix": f"test{uuid.uuid4().hex[:8]}"}
    sender = GatedRedisLayer(**config)
    sender.gate = asyncio.Event()
    return sender, PipelinedPubSubChannelLayer(**config)


@pytest.mark.redis
async def test_sockets_here_get_events_while_redis_has_not_taken_them_yet():
    sender, receiver = redis_pair()
    hub = LocalHub(channel_layer=sender, inbox=ProcessInbox(layer=sender))
    socket = Socket()
    stream = socket.stream(7)
    await hub.attach(stream)
    await stream.start(1)
    elsewhere = await receiver.new_channel()
    await receiver.group_add(user_group(7), elsewhere)
    await asyncio.wait_for(
        hub.publish([StoredEvent(7, 1, encode_frame({"seq": 1}), time.time())]), 5
    )
    assert socket.seqs == [1]  # handed out here while the send to Redis waits at its gate
    sender.gate.set()
    await hub.drain()
    got = await asyncio.wait_for(receiver.receive(elsewhere), 5)
    assert [seq for seq, _, _ in got["events"]] == [1]
    await hub.detach(stream)
    await sender.flush()
    await receiver.flush()


@pytest.mark.redis
async def test_a_stopping_process_sends_what_its_outbox_holds_before_it_stops(seeded):
    sender, receiver = redis_pair()
    built = build_process(layer=sender)
    socket = Socket()
    stream = socket.stream(7)
    await built.hub.attach(stream)  # the hub publishes for others only while shared
    await stream.start(1)
    elsewhere = await receiver.new_channel()
    await receiver.group_add(user_group(7), elsewhere)
    await built.hub.publish([StoredEvent(7, 1, encode_frame({"seq": 1}), time.time())])
    stopping = asyncio.create_task(built.lifecycle.shutdown())
    await asyncio.sleep(0.2)
    assert not stopping.done()  # waiting for the outbox, whose send waits at the gate
    sender.gate.set()
    await asyncio.wait_for(stopping, 10)
    got = await asyncio.wait_for(receiver.receive(elsewhere), 5)
    assert [seq for seq, _, _ in got["events"]] == [1]
    built.close()
    await sender.flush()
    await receiver.flush()
