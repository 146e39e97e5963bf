"""A raw `websockets` server doing the same broadcast as bench/plain/asgi.py, for comparison.

Usage: python -m bench.plain.raw_server PORT [--store POSTGRES_URL]
With --store it keeps our path's one promise and nothing else: each event is
committed to PostgreSQL (table floor_events, made by the caller) before it is
sent. Events made while a commit is in flight are stored together by the next
one (up to 1,000, as ours), a multi-row INSERT in autocommit: one round trip
and one WAL flush. It is the floor of "stored before sent" on this machine: no
seq counters, no Redis, no sanitising or envelope.
"""

import argparse
import asyncio
import itertools
import json
import os
import time
from typing import Any

import websockets

from bench.pacing import paced

groups: dict[int, set] = {}
drivers: set[asyncio.Future] = set()
MAX_BATCH = 1000  # as our writer's (agents/events/writer.py)


class Store:
    """Commits events to PostgreSQL in batches, then broadcasts them in order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: Any = None
        self.pending: list[tuple[int, int, str]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect (autocommit: each INSERT is its own transaction) and start the flusher."""
        import psycopg

        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        self.task = asyncio.create_task(self._flush())

    def add(self, user: int, seq: int, text: str) -> None:
        """Queue an event for the next commit."""
        self.pending.append((user, seq, text))
        self.wake.set()

    async def _flush(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                # Everything queued while the last commit was in flight goes in this one.
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                values = ",".join(["(%s,%s,%s)"] * len(batch))
                params = [item for event in batch for item in event]
                await self.conn.execute(
                    f"INSERT INTO floor_events (user_id, seq, frame) VALUES {values}", params
                )
                for user, _, text in batch:
                    websockets.broadcast(groups.get(user, ()), text)


store: Store | None = None
# Rows' keys unique across runs and processes (each run's `i` starts again at 0).
keys = itertools.count(os.getpid() * 10**9)


async def drive(users: int, rate: float, seconds: float) -> None:
    async for i in paced(rate, int(rate * seconds)):
        text = json.dumps({"type": "partial_result", "seq": i, "t": time.time()})
        if store is not None:
            store.add(i % users, next(keys), text)
            continue
        # websockets' own fan-out: writes the frame to each socket without awaiting.
        websockets.broadcast(groups.get(i % users, ()), text)


async def handler(ws) -> None:
    async for raw in ws:
        frame = json.loads(raw)
        if "user" in frame:
            groups.setdefault(int(frame["user"]), set()).add(ws)
            await ws.send('{"type":"joined"}')
        elif "drive" in frame:
            drivers.add(asyncio.ensure_future(drive(**frame["drive"])))


async def main(port: int, store_url: str | None) -> None:
    global store
    if store_url:
        store = Store(store_url)
        await store.start()
    # No compression: neither daphne nor the load client compresses either.
    async with websockets.serve(handler, "127.0.0.1", port, max_queue=None, compression=None):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--store", default=None, help="a PostgreSQL URL: commit before sending")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.store))
