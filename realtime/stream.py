"""SocketStream: one socket's gapless, increasing stream of a user's events.

Live events arrive from the hub as they are published; stored ones are sent by
resume and by gap fills. While stored events are being sent (or before the
socket's starting point is known) live ones are held, then released in seq
order, so the socket never sees a seq twice or out of order, and a hole (an
event published out of order by another process, or lost while the layer was
down) is filled from the database before the next event.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from agents.events.replay import FirstPageReader, Replay, first_page_alone
from realtime import metrics

logger = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]


class SocketStream:
    """Orders live and stored events for one socket of one user.

    Held events always have someone responsible for releasing them: the body
    holding the lock (its exit releases them, whether it returned or raised),
    the start of the stream, or a gap-fill task. When the stream cannot be kept
    gapless (storage failed), it fails: the socket is closed and the client
    resumes; it never goes silent.
    """

    def __init__(
        self,
        *,
        user_id: int,
        send: SendText,
        on_failure: Callable[[BaseException], None],
        first_page: FirstPageReader = first_page_alone,
    ) -> None:
        self.user_id = user_id
        # How resume reads its first page (the process's FirstPages, for a WebSocket).
        self._first_page = first_page
        # The seq this socket sends next; None until the socket's start is known.
        self.next_seq: int | None = None
        self.closed = False
        self._send = send
        self._on_failure = on_failure
        self._held: list[tuple[int, str, float | None]] = []
        self._stored = asyncio.Lock()
        self._filler: asyncio.Task[None] | None = None

    async def start(self, next_seq: int) -> None:
        """Begin the live stream at `next_seq`, releasing what arrived meanwhile."""
        async with self._exclusive():
            self.next_seq = next_seq

    async def offer(self, seq: int, text: str, called_at: float | None = None) -> None:
        """Take a live event: send it now, skip it, or hold it until it can go in order."""
        if self.closed:
            return
        if self.next_seq is None or self._stored.locked() or self._held:
            self._held.append((seq, text, called_at))
            if not self._stored.locked() and self.next_seq is not None:
                self._schedule_release()
            return
        if seq < self.next_seq:
            return  # already sent (by resume or a gap fill)
        if seq > self.next_seq:
            self._held.append((seq, text, called_at))
            self._schedule_release()
            return
        self.next_seq = seq + 1
        await self._send_live(text, called_at)

    async def resume(self, after_seq: int, done: Callable[[int, bool], Awaitable[None]]) -> int:
        """Send every stored event after the cursor, then call `done(last, recovered)`.

        `last` is the last event sent, or, when none was, the cursor or the
        user's last event if that is lower: a cursor beyond what is stored never
        makes the socket skip events stored later.
        """
        async with self._exclusive():
            replay = Replay(
                user_id=self.user_id,
                after_seq=after_seq,
                check_horizon=True,
                first_page=self._first_page,
            )
            sent, count = await self._send_stored(replay)
            last = sent if sent is not None else min(after_seq, replay.user_last_seq)
            self.next_seq = max(self.next_seq or 0, last + 1)
            await done(last, bool(replay.recovered))
        return count

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold live events while the body runs (a reply that must come before them)."""
        async with self._exclusive():
            yield

    def close(self) -> None:
        """Stop taking events and any gap fill in progress (the socket is gone)."""
        self.closed = True
        if self._filler is not None:
            self._filler.cancel()
        self._held.clear()

    def fail(self, exc: BaseException) -> None:
        """Give up on this socket's stream: close it so that its client resumes."""
        if self.closed:
            return
        self.close()
        metrics.STREAM_FAILURES.inc()
        self._on_failure(exc)

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold live events while the body sends stored ones; release them however it ends."""
        async with self._stored:
            try:
                yield
            finally:
                await self._release_or_fail()

    def _schedule_release(self) -> None:
        if self._filler is None or self._filler.done():
            self._filler = asyncio.get_running_loop().create_task(self._fill_held())

    async def _send_live(self, text: str, called_at: float | None) -> None:
        await self._send(text)
        metrics.EVENTS_DELIVERED.inc()
        if called_at is not None:
            metrics.EMIT_TO_SOCKET.observe(max(0.0, time.time() - called_at))

    async def _fill_held(self) -> None:
        async with self._stored:
            await self._release_or_fail()

    async def _release_or_fail(self) -> None:
        if self.closed or self.next_seq is None:
            return
        try:
            await self._release_held()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception(
                "sending held events failed; closing the socket so that it resumes user_id=%s",
                self.user_id,
                extra={"user_id": self.user_id},
            )
            self.fail(exc)

    async def _release_held(self) -> None:
        """Send held live events in seq order, filling holes from storage (under the lock)."""
        assert self.next_seq is not None
        while self._held and not self.closed:
            held = sorted(self._held, key=lambda item: item[0])
            self._held.clear()
            for seq, text, called_at in held:
                if seq > self.next_seq:
                    await self._fill(through_seq=seq - 1)
                if seq < self.next_seq or self.closed:
                    continue
                self.next_seq = seq + 1
                await self._send_live(text, called_at)

    async def _fill(self, *, through_seq: int) -> None:
        # An event is stored before any later seq is given out, so what is
        # missing here is already in the database.
        assert self.next_seq is not None
        metrics.GAP_FILLS.inc()
        replay = Replay(user_id=self.user_id, after_seq=self.next_seq - 1, through_seq=through_seq)
        # next_seq moves past the hole with the live event sent right after the fill.
        _, count = await self._send_stored(replay)
        metrics.EVENTS_GAP_FILLED.inc(count)

    async def _send_stored(self, replay: Replay) -> tuple[int | None, int]:
        """Send stored events in order; return the last seq sent (None if none) and the count."""
        last: int | None = None
        count = 0
        async for seq, text in replay.frames():
            if self.closed:
                break
            await self._send(text)
            last, count = seq, count + 1
        return last, count
