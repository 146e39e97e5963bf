"""Channel layers for the hub: many group messages in one Redis round trip.

`PipelinedPubSubChannelLayer` is channels-redis' pub/sub layer (chosen by its
BACKEND import string in settings) plus `group_send_many`. channels-redis 4.3
publishes one message per round trip, one at a time under a per-shard lock, so
a batch of events for 100 users waited 100 round trips. There is no public API
for a pipeline, so `_publish_pipelined` (and only it) uses the layer's
internals: the same shard connections, channel names and lock `group_send`
uses, so subscribers see exactly what `group_send` would have sent.
tests/realtime/test_layers.py fails loudly when those internals change; the
version is pinned in pyproject.toml for the same reason.
"""

from typing import Any, Protocol

from channels.layers import BaseChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

Messages = list[tuple[str, dict[str, Any]]]


class SendsMany(Protocol):
    """A layer that can send many group messages at once."""

    async def group_send_many(self, messages: Messages) -> None:
        """group_send each (group, message), keeping each group's order."""


class PipelinedPubSubChannelLayer(RedisPubSubChannelLayer):  # type: ignore[misc]
    """The Redis pub/sub layer, with a batch of publishes in one round trip per shard."""

    async def group_send_many(self, messages: Messages) -> None:
        """group_send each (group, message) in order, pipelined per shard."""
        await _publish_pipelined(self, messages)


async def group_send_many(layer: BaseChannelLayer, messages: Messages) -> None:
    """group_send each (group, message) in order; in one round trip where the layer can."""
    if isinstance(layer, PipelinedPubSubChannelLayer):
        await layer.group_send_many(messages)
        return
    for group, message in messages:
        await layer.group_send(group, message)


# The channels-redis internals _publish_pipelined uses (checked by the tests).
INTERNALS = {
    "RedisPubSubChannelLayer": ("_get_layer", "serialize"),
    "RedisPubSubLoopLayer": ("_get_group_channel_name", "_get_shard"),
    "RedisSingleShardConnection": ("_lock", "_ensure_redis", "_redis"),
}


async def _publish_pipelined(layer: RedisPubSubChannelLayer, messages: Messages) -> None:
    loop_layer: Any = layer._get_layer()
    by_shard: dict[Any, list[tuple[str, bytes]]] = {}
    for group, message in messages:
        channel = loop_layer._get_group_channel_name(group)
        shard = loop_layer._get_shard(channel)
        by_shard.setdefault(shard, []).append((channel, layer.serialize(message)))
    for shard, items in by_shard.items():
        async with shard._lock:
            shard._ensure_redis()
            pipe = shard._redis.pipeline(transaction=False)
            for channel, data in items:
                pipe.publish(channel, data)
            await pipe.execute()
