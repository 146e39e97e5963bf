"""A lean WebSocket load client spread over processes, so that it is not what limits a bench.

Each worker process holds its share of the sockets in its own event loop, reads
frames with `async for` (no per-frame timer), takes the send time out of the
frame by slicing instead of parsing JSON, and keeps latencies in an array.
Compression is off (the servers measured do not compress either). The parent
starts the workers, waits until every socket is open, lets the caller start the
load, and gathers the figures.
"""

import asyncio
import contextlib
import multiprocessing as mp
import ssl
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets

OURS = "ours"  # our partial_result frames: the emit time is the delta's text
PLAIN = "plain"  # the comparison servers' frames: {"type": ..., "seq": n, "t": time}


@dataclass
class Socket:
    """One socket to open: its headers, a frame to send and await a reply to, a frame for `go`."""

    headers: dict[str, str] = field(default_factory=dict)
    greet: str | None = None  # sent once open; its reply is awaited (joining a group)
    start: str | None = None  # sent when the load starts
    skip_hello: bool = False  # read one frame first (our connection_established)


@dataclass
class Outcome:
    """What every worker read: latencies (ms) and the first send / last read times."""

    latencies: array = field(default_factory=lambda: array("d"))
    first: float = float("inf")
    last: float = 0.0

    @property
    def seconds(self) -> float:
        """Seconds from the first event produced to the last one read."""
        return max(0.0, self.last - self.first) if self.latencies else 0.0


def stamp_ours(raw: str) -> float | None:
    """The emit time the firehose agent put in a partial_result, or None for other frames."""
    if not raw.startswith('{"type":"partial_result"'):
        return None
    start = raw.index('"delta":"') + 9
    return float(raw[start : raw.index('"', start)])


def stamp_plain(raw: str) -> float | None:
    """The send time a comparison server put in its frame."""
    start = raw.find('"t": ')
    if start < 0:
        return None
    return float(raw[start + 5 : raw.index("}", start)])


STAMPS: dict[str, Callable[[str], float | None]] = {OURS: stamp_ours, PLAIN: stamp_plain}


def run(
    url: str,
    sockets: list[Socket],
    *,
    per_socket: int,
    deadline_s: float,
    stamp: str,
    processes: int = 2,
    when_ready: Callable[[], None] | None = None,
    ssl_cafile: str | None = None,
) -> Outcome:
    """Open the sockets over `processes` workers, call `when_ready`, start, read, gather."""
    ctx = mp.get_context("spawn")
    shares = [sockets[i::processes] for i in range(processes)]
    go = ctx.Event()
    workers = []
    for share in shares:
        if not share:
            continue
        ready = ctx.Event()
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker,
            args=(url, share, per_socket, deadline_s, stamp, ready, go, child, ssl_cafile),
        )
        proc.start()
        workers.append((proc, ready, parent))
    try:
        for proc, ready, _ in workers:
            while not ready.wait(0.5):
                if not proc.is_alive():
                    raise RuntimeError("a load-client worker died while connecting")
        if when_ready is not None:
            when_ready()
        go.set()
        outcome = Outcome()
        for _, _, parent in workers:
            latencies, first, last = parent.recv()
            outcome.latencies.frombytes(latencies)
            outcome.first = min(outcome.first, first)
            outcome.last = max(outcome.last, last)
        return outcome
    finally:
        for proc, _, _ in workers:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def _worker(
    url: str,
    share: list[Socket],
    per_socket: int,
    deadline_s: float,
    stamp: str,
    ready: Any,
    go: Any,
    out: Any,
    ssl_cafile: str | None = None,
) -> None:
    tls = ssl.create_default_context(cafile=ssl_cafile) if ssl_cafile else None
    outcome = asyncio.run(
        _read_all(url, share, per_socket, deadline_s, STAMPS[stamp], ready, go, tls)
    )
    out.send((outcome.latencies.tobytes(), outcome.first, outcome.last))


async def _read_all(
    url: str,
    share: list[Socket],
    per_socket: int,
    deadline_s: float,
    stamp: Callable[[str], float | None],
    ready: Any,
    go: Any,
    tls: ssl.SSLContext | None,
) -> Outcome:
    opened = []
    for spec in share:
        ws = await websockets.connect(
            url,
            **({"ssl": tls} if tls is not None else {}),
            additional_headers=spec.headers,
            compression=None,
            max_size=None,
            max_queue=None,
            open_timeout=30,
        )
        if spec.skip_hello:
            await ws.recv()
        if spec.greet is not None:
            await ws.send(spec.greet)
            await ws.recv()
        opened.append((ws, spec))
    ready.set()
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    for ws, spec in opened:
        if spec.start is not None:
            await ws.send(spec.start)
    outcome = Outcome()
    latencies = outcome.latencies

    async def read(ws: Any) -> None:
        got = 0
        async for raw in ws:
            sent = stamp(raw)
            if sent is None:
                continue
            now = time.time()
            latencies.append((now - sent) * 1000)
            outcome.first = min(outcome.first, sent)
            outcome.last = now
            got += 1
            if got >= per_socket:
                return

    readers = [asyncio.ensure_future(read(ws)) for ws, _ in opened]
    await asyncio.wait(readers, timeout=deadline_s)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for ws, _ in opened:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2)
    return outcome
