"""A raw `websockets` server doing the same broadcast as bench/plain/asgi.py, for comparison.

Usage: python -m bench.plain.raw_server PORT [--store POSTGRES_URL [--counters] [--thread]]
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import websockets

from bench.pacing import paced

groups: dict[int, set] = {}
drivers: set[asyncio.Future] = set()
MAX_BATCH = 1000  # as our writer's (agents/events/writer.py)


COUNTERS = (
    "INSERT INTO floor_counters (user_id, last) SELECT u, 1 FROM unnest(%s::int[]) u "
    "ON CONFLICT (user_id) DO UPDATE SET last = floor_counters.last + 1"
)


class Store:
    """Commits events to PostgreSQL in batches, then broadcasts them in order.

    By default one multi-row INSERT in autocommit on an async connection on the
    loop. `counters`: BEGIN, an upsert of the batch's users' counter rows, the
    INSERT, COMMIT (four round trips, as psycopg sends them). `thread`: on a
    blocking connection in a one-thread executor, as our writer does.
    """

    def __init__(self, url: str, *, counters: bool = False, thread: bool = False) -> None:
        self.url = url
        self.counters = counters
        self.thread = thread
        self.conn: Any = None
        self.pending: list[tuple[int, int, str]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1) if thread else None

    async def start(self) -> None:
        """Connect (autocommit: each INSERT alone is its own transaction); start the flusher."""
        import psycopg

        if self.thread:
            self.conn = psycopg.Connection.connect(self.url, autocommit=True)
        else:
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
                if self.executor is not None:
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(self.executor, self._store_blocking, batch)
                else:
                    await self._store(batch)
                for user, _, text in batch:
                    websockets.broadcast(groups.get(user, ()), text)

    async def _store(self, batch: list[tuple[int, int, str]]) -> None:
        insert, params = _insert(batch)
        if not self.counters:
            await self.conn.execute(insert, params)
            return
        async with self.conn.transaction():
            await self.conn.execute(COUNTERS, [sorted({user for user, _, _ in batch})])
            await self.conn.execute(insert, params)

    def _store_blocking(self, batch: list[tuple[int, int, str]]) -> None:
        insert, params = _insert(batch)
        if not self.counters:
            self.conn.execute(insert, params)
            return
        with self.conn.transaction():
            self.conn.execute(COUNTERS, [sorted({user for user, _, _ in batch})])
            self.conn.execute(insert, params)


def _insert(batch: list[tuple[int, int, str]]) -> tuple[str, list[Any]]:
    values = ",".join(["(%s,%s,%s)"] * len(batch))
    params = [item for event in batch for item in event]
    return f"INSERT INTO floor_events (user_id, seq, frame) VALUES {values}", params


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


async def main(port: int, store_url: str | None, counters: bool, thread: bool) -> None:
    global store
    if store_url:
        store = Store(store_url, counters=counters, thread=thread)
        await store.start()
    # No compression: neither daphne nor the load client compresses either.
    async with websockets.serve(handler, "127.0.0.1", port, max_queue=None, compression=None):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--store", default=None, help="a PostgreSQL URL: commit before sending")
    parser.add_argument("--counters", action="store_true", help="with counter rows, 4 round trips")
    parser.add_argument("--thread", action="store_true", help="store on a thread, as ours")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.store, args.counters, args.thread))
