"""A lean WebSocket load client spread over processes, so that it is not what limits a bench.

Each worker process holds its share of the sockets in its own event loop, each
socket websockets' Sans-I/O protocol straight on an asyncio transport (frames
handled as they arrive, with no future, queue or task per frame), takes the
send time out of the frame by slicing its bytes instead of parsing JSON, and
keeps latencies in an array.
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

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

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
    cpu: float = 0.0  # the workers' CPU seconds from the start of the load to their last read

    @property
    def seconds(self) -> float:
        """Seconds from the first event produced to the last one read."""
        return max(0.0, self.last - self.first) if self.latencies else 0.0


def stamp_ours(raw: bytes) -> float | None:
    """The emit time the firehose agent put in a partial_result, or None for other frames."""
    if not raw.startswith(b'{"type":"partial_result"'):
        return None
    start = raw.index(b'"delta":"') + 9
    return float(raw[start : raw.index(b'"', start)])


def stamp_plain(raw: bytes) -> float | None:
    """The send time a comparison server put in its frame."""
    start = raw.find(b'"t": ')
    if start < 0:
        return None
    return float(raw[start + 5 : raw.index(b"}", start)])


STAMPS: dict[str, Callable[[bytes], float | None]] = {OURS: stamp_ours, PLAIN: stamp_plain}


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
            latencies, first, last, cpu = parent.recv()
            outcome.latencies.frombytes(latencies)
            outcome.first = min(outcome.first, first)
            outcome.last = max(outcome.last, last)
            outcome.cpu += cpu
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
    out.send((outcome.latencies.tobytes(), outcome.first, outcome.last, outcome.cpu))


class LeanSocket(asyncio.Protocol):
    """One socket: websockets' Sans-I/O protocol straight on an asyncio transport.

    websockets does the handshake, the framing, pings and the closing handshake;
    each text message goes to `on_text` as bytes from data_received, with no
    future, queue or task per frame (what the library's asyncio connection adds).
    """

    def __init__(self, url: str, headers: dict[str, str], on_text: Callable[[bytes], None]) -> None:
        # No extensions offered: no compression, as the servers measured do not compress.
        self.ws = ClientProtocol(parse_uri(url), max_size=None)
        self.request = self.ws.connect()
        self.request.headers.update(headers)
        self.on_text = on_text
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: Any = None
        self._parts: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        """Send the upgrade request."""
        self.transport = transport
        self.ws.send_request(self.request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        """Feed the bytes to websockets; hand each text message to on_text."""
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if self.ws.state is State.OPEN:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(self.ws.handshake_exc or ConnectionError("refused"))
            elif not isinstance(event, Frame):
                continue
            elif event.opcode is Opcode.TEXT and event.fin:
                self.on_text(bytes(event.data))
            elif event.opcode in (Opcode.TEXT, Opcode.CONT):
                self._parts.append(bytes(event.data))
                if event.fin:
                    text, self._parts = b"".join(self._parts), []
                    self.on_text(text)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell websockets, and whoever waits for the socket."""
        self.ws.receive_eof()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)

    def send_text(self, text: str) -> None:
        """Send a text message."""
        self.ws.send_text(text.encode())
        self._flush()

    async def close(self) -> None:
        """Start the closing handshake; wait for the server to close (at most 2 s)."""
        if self.ws.state is State.OPEN:
            self.ws.send_close()
            self._flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.lost), 2)
        self.transport.close()

    def _flush(self) -> None:
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()


async def connect(
    url: str,
    headers: dict[str, str],
    on_text: Callable[[bytes], None],
    tls: ssl.SSLContext | None = None,
    seconds: float = 30,
) -> LeanSocket:
    """Open one lean socket and wait for its handshake; each text message goes to on_text."""
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    _, lean = await asyncio.wait_for(
        loop.create_connection(
            lambda: LeanSocket(url, headers, on_text),
            uri.host,
            uri.port,
            ssl=tls,
            server_hostname=uri.host if tls is not None else None,
        ),
        seconds,
    )
    await asyncio.wait_for(lean.opened, seconds)
    return lean


async def _open(url: str, spec: Socket, tls: ssl.SSLContext | None) -> LeanSocket:
    """Open one socket; read the hello and the greeting's reply if it has them."""
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    lean = await connect(url, spec.headers, replies.put_nowait, tls)
    if spec.skip_hello:
        await asyncio.wait_for(replies.get(), 30)
    if spec.greet is not None:
        lean.send_text(spec.greet)
        await asyncio.wait_for(replies.get(), 30)
    return lean


async def _read_all(
    url: str,
    share: list[Socket],
    per_socket: int,
    deadline_s: float,
    stamp: Callable[[bytes], float | None],
    ready: Any,
    go: Any,
    tls: ssl.SSLContext | None,
) -> Outcome:
    opened = [await _open(url, spec, tls) for spec in share]
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    latencies = outcome.latencies
    pending = len(opened)
    done = loop.create_future()

    def reader() -> Callable[[bytes], None]:
        got = 0

        def on_text(raw: bytes) -> None:
            nonlocal got, pending
            sent = stamp(raw)
            if sent is None or got >= per_socket:
                return
            now = time.time()
            latencies.append((now - sent) * 1000)
            if sent < outcome.first:
                outcome.first = sent
            outcome.last = now
            got += 1
            if got == per_socket:
                pending -= 1
                if not pending and not done.done():
                    outcome.cpu = time.process_time() - cpu_at_go
                    done.set_result(None)

        return on_text

    # Read from here on: another worker's `start` may set the load going before
    # this one has seen `go`.
    for lean in opened:
        lean.on_text = reader()
    ready.set()
    await loop.run_in_executor(None, go.wait)
    cpu_at_go = time.process_time()
    for lean, spec in zip(opened, share, strict=True):
        if spec.start is not None:
            lean.send_text(spec.start)
    # asyncio.wait, not wait_for: a timeout must not cancel `done` (that would read as done).
    await asyncio.wait([done], timeout=deadline_s)
    if not done.done():
        outcome.cpu = time.process_time() - cpu_at_go
    await asyncio.gather(*(lean.close() for lean in opened), return_exceptions=True)
    return outcome
