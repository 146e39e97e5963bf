"""The few places that rely on library internals fail here, loudly, when a library changes."""

import pytest
from channels_redis import pubsub

from realtime.layers import INTERNALS, PipelinedPubSubChannelLayer
from tests.conftest import connect_user, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_channels_redis_still_has_what_the_pipelined_publish_uses():
    layer = PipelinedPubSubChannelLayer(hosts=[{"address": "redis://127.0.0.1:1"}])
    loop_layer = layer._get_layer()
    shard = loop_layer._get_shard(loop_layer._get_group_channel_name("user.1"))
    found = {
        "RedisPubSubChannelLayer": layer,
        "RedisPubSubLoopLayer": loop_layer,
        "RedisSingleShardConnection": shard,
    }
    for owner, names in INTERNALS.items():
        assert type(found[owner]).__name__ in {owner, "PipelinedPubSubChannelLayer"}
        missing = [n for n in names if not hasattr(found[owner], n)]
        assert not missing, f"channels-redis changed: {owner} lacks {missing}"
    assert isinstance(layer, pubsub.RedisPubSubChannelLayer)


def test_the_redis_setting_chooses_the_pipelined_layer(monkeypatch):
    import importlib

    from chatplatform import settings as project_settings

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        layers = importlib.reload(project_settings).CHANNEL_LAYERS
    finally:
        monkeypatch.delenv("REDIS_URL")
        importlib.reload(project_settings)
    assert layers["default"]["BACKEND"] == "realtime.layers.PipelinedPubSubChannelLayer"


def test_daphne_and_twisted_still_have_what_the_send_guard_uses():
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet.abstract import FileDescriptor

    assert callable(WebSocketProtocol.handle_reply)
    assert {"STATE_OPEN", "dropConnection"} <= set(dir(WebSocketProtocol))
    transport = FileDescriptor()
    assert isinstance(transport.dataBuffer, bytes)
    assert isinstance(transport.offset, int)
    assert isinstance(transport._tempDataLen, int)


async def test_sockets_get_no_channel_layer_channel_of_their_own(amake_user, registry, process):
    # The consumer's channel_layer_alias names no layer, so Channels gives it no
    # channel (events come from the hub); if Channels changed that, every socket
    # would cost a layer channel again.
    user = await amake_user()
    comm, _ = await connect_user(user)
    assert process.layer.channels == {}
    await comm.disconnect()


async def test_frames_reach_the_consumer_without_channels_database_hop(
    amake_user, registry, monkeypatch
):
    # Channels' AsyncConsumer.dispatch awaits channels.consumer.aclose_old_connections
    # (a thread hop) before every message; AgentConsumer.dispatch leaves it out.
    import channels.consumer

    hops = []

    async def counted() -> None:
        hops.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    user = await amake_user()
    comm, _ = await connect_user(user)
    await send(comm, {"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "pong"
    await comm.disconnect()
    assert hops == []


def test_autobahn_still_formats_its_debug_lines_with_what_we_swap():
    # realtime/autobahn_logging.py swaps these names in autobahn's protocol module;
    # if autobahn stopped using them the swap would do nothing (and cost nothing).
    import inspect

    from autobahn.websocket import protocol

    source = inspect.getsource(protocol)
    for name in ("hltype", "hlval", "pformat"):
        assert hasattr(protocol, name) and f"{name}(" in source


def test_autobahn_helpers_are_swapped_only_while_debug_is_off(monkeypatch):
    import txaio
    from autobahn.websocket import protocol

    from realtime import autobahn_logging

    for name in autobahn_logging.HELPERS:
        monkeypatch.setattr(protocol, name, getattr(protocol, name))
    monkeypatch.setattr(txaio, "get_global_log_level", lambda: "debug")
    assert autobahn_logging.install() is False
    assert protocol.hltype is not autobahn_logging._untouched
    monkeypatch.setattr(txaio, "get_global_log_level", lambda: "info")
    assert autobahn_logging.install() is True
    assert protocol.hlval("x") == "x" and protocol.pformat([1]) == [1]
