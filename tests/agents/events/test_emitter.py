"""The emitter: seq order under concurrency, loud delivery failures, no loss in bursts."""

import asyncio
import logging
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from prometheus_client import REGISTRY

from agents.events.emitter import EventEmitter, RunRef
from agents.events.writer import EventWriter, StoredEvent
from agents.models import Agent, Run, RunEvent, Thread
from realtime.groups import EVENT_MESSAGE_TYPE
from realtime.hub import LocalHub
from realtime.inbox import ProcessInbox
from tests.conftest import connect_user
from tests.services import free_port, require_redis

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_run(user):
    thread = Thread.objects.create(user=user, title="t")
    run = Run.objects.create(
        user=user, agent=Agent.objects.get(name="stepper"), thread=thread, message="m"
    )
    return RunRef(run_id=str(run.id), thread_id=str(thread.id), agent_name="stepper")


async def drain(comm, count, timeout=30):
    frames = []
    while len(frames) < count:
        frames.append(await comm.receive_json_from(timeout=timeout))
    return frames


async def test_concurrent_runs_get_strictly_increasing_gapless_seqs(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    refs = [await make_run(user) for _ in range(5)]

    async def emit_many(ref):
        for i in range(40):
            await session.emitter.emit(ref, "partial_result", {"delta": str(i)})

    comm, hello = await connect_user(user)
    await asyncio.gather(*(emit_many(ref) for ref in refs))
    frames = await drain(comm, 200)
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(hello["last_seq"] + 1, hello["last_seq"] + 201))
    stored = [
        s
        async for s in RunEvent.objects.filter(user=user)
        .order_by("seq")
        .values_list("seq", flat=True)
    ]
    assert stored == seqs
    # each run's own events kept their order
    for ref in refs:
        deltas = [f["data"]["delta"] for f in frames if f["run_id"] == ref.run_id]
        assert deltas == [str(i) for i in range(40)]
    await comm.disconnect()


async def test_delivery_failure_is_logged_counted_and_the_event_kept(amake_user, caplog):
    user = await amake_user()
    ref = await make_run(user)
    # A real Redis layer pointed at a port where nothing listens: publishing fails.
    dead = RedisPubSubChannelLayer(
        hosts=[{"address": f"redis://127.0.0.1:{free_port()}", "socket_connect_timeout": 1}]
    )
    hub = LocalHub(channel_layer=dead, inbox=ProcessInbox(layer=dead))
    writer = EventWriter(publish=hub.publish)
    emitter = EventEmitter(user_id=user.pk, writer=writer)
    before = REGISTRY.get_sample_value("chatplatform_delivery_failures_total")
    with caplog.at_level(logging.ERROR, logger="realtime.hub"):
        envelope = await emitter.emit(ref, "partial_result", {"delta": "kept"})
        await hub.drain()
    assert REGISTRY.get_sample_value("chatplatform_delivery_failures_total") == before + 1
    [logged] = [r for r in caplog.records if r.name == "realtime.hub"]
    seq = envelope["seq"]
    assert logged.getMessage() == (
        f"live delivery failed (user_id={user.pk} seq={seq}..{seq}); events kept for resume"
    )
    assert (logged.user_id, logged.seq) == (user.pk, seq)
    stored = await RunEvent.objects.aget(user=user, seq=envelope["seq"])
    assert stored.payload == {"delta": "kept"}
    await dead.flush()
    await database_sync_to_async(writer.close)()


def test_emitter_refuses_to_exist_without_a_writer():
    with pytest.raises(ValueError, match="EventWriter"):
        EventEmitter(user_id=1, writer=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        EventEmitter(user_id=1)  # type: ignore[call-arg]


BURST = 5000


async def layer_burst(layer):
    """group_send a burst faster than anyone reads, then read it all."""
    group = f"user.{uuid.uuid4().int % 10**9}"
    channels = [await layer.new_channel() for _ in range(3)]
    for channel in channels:
        await layer.group_add(group, channel)
    for seq in range(1, BURST + 1):
        await layer.group_send(group, {"type": EVENT_MESSAGE_TYPE, "seq": seq, "text": "x"})
    received = {}
    for channel in channels:
        got = []
        while len(got) < BURST:
            message = await asyncio.wait_for(layer.receive(channel), timeout=10)
            got.append(message["seq"])
        received[channel] = got
    return received


async def test_configured_in_memory_layer_loses_nothing_in_a_burst():
    # With Channels' default capacity (100) this burst would lose all but 100 per channel.
    received = await layer_burst(get_channel_layer())
    assert all(seqs == list(range(1, BURST + 1)) for seqs in received.values())


@pytest.mark.redis
async def test_configured_redis_layer_loses_nothing_in_a_burst(settings):
    url = require_redis()
    from chatplatform import settings as project_settings

    layer_settings = project_settings.CHANNEL_LAYERS
    assert layer_settings["default"]["BACKEND"].endswith("InMemoryChannelLayer")
    settings.CHANNEL_LAYERS = redis_layers(url)
    layer = get_channel_layer()
    assert isinstance(layer, RedisPubSubChannelLayer)
    received = await layer_burst(layer)
    assert all(seqs == list(range(1, BURST + 1)) for seqs in received.values())
    await layer.flush()


def redis_layers(url):
    """Return the project's Redis CHANNEL_LAYERS for `url`, with a prefix of this test's own."""
    import importlib
    import os

    os.environ["REDIS_URL"] = url
    os.environ["CHANNEL_LAYER_PREFIX"] = f"test{uuid.uuid4().hex[:8]}"
    from chatplatform import settings as project_settings

    try:
        return importlib.reload(project_settings).CHANNEL_LAYERS
    finally:
        del os.environ["REDIS_URL"]
        del os.environ["CHANNEL_LAYER_PREFIX"]
        importlib.reload(project_settings)  # leave the module as the environment says


@pytest.mark.redis
async def test_full_path_burst_over_redis_reaches_every_tab(amake_user, registry, settings):
    url = require_redis()
    settings.CHANNEL_LAYERS = redis_layers(url)
    user = await amake_user()
    tabs = [(await connect_user(user))[0] for _ in range(3)]
    session = await registry.get_user_session(user.pk)
    refs = [await make_run(user) for _ in range(4)]

    async def emit_many(ref):
        for i in range(250):
            await session.emitter.emit(ref, "partial_result", {"delta": str(i)})

    await asyncio.gather(*(emit_many(ref) for ref in refs))
    stored = [
        s
        async for s in RunEvent.objects.filter(user=user)
        .order_by("seq")
        .values_list("seq", flat=True)
    ]
    assert len(stored) == 1000
    for tab in tabs:
        assert [f["seq"] for f in await drain(tab, 1000)] == stored
        await tab.disconnect()
    await get_channel_layer().flush()


@pytest.mark.redis
async def test_burst_of_150_concurrent_connects_over_redis(amake_user, registry, settings):
    # redis-py's default pool (100 connections) fails such a burst with the core layer.
    url = require_redis()
    settings.CHANNEL_LAYERS = redis_layers(url)
    settings.WS_MAX_CONNECTIONS_PER_USER = 200  # this test is about the layer, not that limit
    user = await amake_user()
    results = await asyncio.gather(*(connect_user(user) for _ in range(150)))
    tabs = [comm for comm, _ in results]
    session = await registry.get_user_session(user.pk)
    ref = await make_run(user)
    envelope = await session.emitter.emit(ref, "partial_result", {"delta": "to all"})
    frames = await asyncio.gather(*(tab.receive_json_from(timeout=10) for tab in tabs))
    assert all(f["seq"] == envelope["seq"] for f in frames)
    await asyncio.gather(*(tab.disconnect() for tab in tabs))
    await get_channel_layer().flush()


async def test_a_failed_publish_names_every_users_range_in_one_line(caplog):
    dead = RedisPubSubChannelLayer(
        hosts=[{"address": f"redis://127.0.0.1:{free_port()}", "socket_connect_timeout": 1}]
    )
    hub = LocalHub(channel_layer=dead, inbox=ProcessInbox(layer=dead))
    batch = [
        StoredEvent(7, 3, "{}", 0.0),
        StoredEvent(7, 4, "{}", 0.0),
        StoredEvent(9, 1, "{}", 0.0),
    ]
    with caplog.at_level(logging.ERROR, logger="realtime.hub"):
        await hub.publish(batch)
        await hub.drain()
    [logged] = [r for r in caplog.records if r.name == "realtime.hub"]
    assert logged.getMessage() == (
        "live delivery failed (user_id=7 seq=3..4, user_id=9 seq=1..1); events kept for resume"
    )
    await dead.flush()
