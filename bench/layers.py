"""Channel layers under a group_send burst: what is delivered, how fast.

Usage: python bench/layers.py [--messages 5000]
One group of 3 channels, receivers reading concurrently (as consumers do),
the sender sending as fast as it can. This is the measurement behind the
layer settings in chatplatform/settings.py and docs/operations.md.
"""

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from bench.results import machine, write_section
from tests.services import REDIS_URL, reachable

CHANNELS = 3


async def burst(layer, messages: int, reader_ms: float) -> tuple[int, float]:
    """Return (messages delivered over all channels, seconds from first send to last receipt)."""
    group = f"bench{uuid.uuid4().hex[:8]}"
    channels = [await layer.new_channel() for _ in range(CHANNELS)]
    for channel in channels:
        await layer.group_add(group, channel)
    counts = [0] * CHANNELS
    last = [0.0]

    async def receive(i: int) -> None:
        while True:
            await layer.receive(channels[i])
            if reader_ms:
                # what a consumer does per event (encode, write to its socket)
                await asyncio.sleep(reader_ms / 1000)
            counts[i] += 1
            last[0] = time.perf_counter()

    readers = [asyncio.create_task(receive(i)) for i in range(CHANNELS)]
    started = time.perf_counter()
    for seq in range(messages):
        await layer.group_send(group, {"type": "agent.event", "seq": seq, "text": "x" * 200})
    # wait until nothing more arrives for a second
    while True:
        before = sum(counts)
        await asyncio.sleep(1.0)
        if sum(counts) == before:
            break
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return sum(counts), max(last[0] - started, 1e-9)


def cases(redis: bool) -> list[tuple[str, object]]:
    """The layers to compare."""
    found: list[tuple[str, object]] = [
        ("InMemoryChannelLayer, Channels defaults (capacity 100)", lambda: InMemoryChannelLayer()),
        (
            "InMemoryChannelLayer, our settings (capacity 100,000)",
            lambda: InMemoryChannelLayer(capacity=100_000, group_expiry=10 * 365 * 86400),
        ),
    ]
    if redis:
        prefix = f"benchlayers{uuid.uuid4().hex[:6]}"
        found += [
            (
                "RedisChannelLayer, defaults (capacity 100)",
                lambda: RedisChannelLayer(hosts=[REDIS_URL], prefix=prefix),
            ),
            (
                "RedisChannelLayer, capacity 100,000",
                lambda: RedisChannelLayer(hosts=[REDIS_URL], prefix=prefix, capacity=100_000),
            ),
            (
                "RedisPubSubChannelLayer (our choice)",
                lambda: RedisPubSubChannelLayer(hosts=[{"address": REDIS_URL}], prefix=prefix),
            ),
        ]
    return found


async def main_async(messages: int) -> list[str]:
    """Measure each layer, with readers that keep up and with slower readers."""
    rows = []
    for reader_ms in (0.0, 1.0):
        for label, make in cases(reachable(REDIS_URL, 6379)):
            layer = make()  # type: ignore[operator]
            delivered, seconds = await burst(layer, messages, reader_ms)
            expected = messages * CHANNELS
            lost = 100 * (expected - delivered) / expected
            print(
                f"{label}, reader {reader_ms:g} ms: delivered {delivered}/{expected} "
                f"({lost:.1f}% lost), {delivered / seconds:,.0f}/s"
            )
            rows.append(
                f"| {label} | {reader_ms:g} ms | {delivered:,} / {expected:,} | {lost:.1f}% "
                f"| {delivered / seconds:,.0f} |"
            )
            if hasattr(layer, "flush"):
                await layer.flush()
    return rows


def main() -> None:
    """Run the comparison and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    rows = asyncio.run(main_async(args.messages))
    write_section(
        "layers",
        "\n".join(
            [
                "## Channel layers under a burst",
                "",
                f"`python bench/layers.py --messages {args.messages}` on {machine()}. "
                f"{args.messages:,} `group_send`s as fast as possible to a group of {CHANNELS} "
                "channels read concurrently in the same process, by readers that take 0 ms "
                "or 1 ms a message (a consumer writing to a socket); 'lost' messages "
                "vanished without any error.",
                "",
                "| layer | reader | delivered | lost | delivered messages/s |",
                "|---|---|---|---|---|",
                *rows,
            ]
        ),
    )


if __name__ == "__main__":
    main()
