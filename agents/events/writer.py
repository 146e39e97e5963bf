"""The EventWriter: every event of this process stored in batches, published after commit.

One transaction per batch instead of one per event (group commit): while a
batch commits on the writer's own thread, the next one gathers in the queue.
On SQLite a small batch is stored on the loop's thread instead when the write
lock is free (inline.py: no hand-off to the thread and back).
Events keep the order they were written in; each is published only once its
batch has committed (persist before send), and its writer learns the outcome.
"""

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import close_old_connections, connections

from agents.events.frames import RunRef, envelope_frame, event_envelope
from agents.events.inline import InlineStore
from agents.events.store import NewEvent, OutcomeUnknown, events_record
from agents.metrics import EVENT_BATCH_SECONDS, EVENT_BATCH_SIZE, EVENT_BATCH_WAIT_SECONDS

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
# Past this many queued events, enqueue() waits for its own event (backpressure).
MAX_QUEUE = 10_000


@dataclass(frozen=True)
class StoredEvent:
    """A committed event, ready to publish."""

    user_id: int
    seq: int
    text: str
    called_at: float


# Receives each committed batch's events, in commit order.
Publish = Callable[[list[StoredEvent]], Awaitable[None]]


@dataclass
class _Pending:
    run: RunRef
    event: NewEvent
    called_at: float
    # None for an enqueued event nobody waits for (most streamed text): no future
    # to make, resolve and call back per event. Made when its enqueuer must wait.
    future: "asyncio.Future[dict[str, Any]] | None"
    envelope: dict[str, Any] = field(default_factory=dict)

    def encode(self, seq: int, created_at: datetime, data_text: str) -> str:
        """Build (and keep) the envelope once seq and time are known; return its frame."""
        self.envelope, frame = _envelope_and_frame(self.run, self.event, seq, created_at, data_text)
        return frame


def _envelope_and_frame(
    run: RunRef, event: NewEvent, seq: int, created_at: datetime, data_text: str
) -> tuple[dict[str, Any], str]:
    envelope = event_envelope(run, event.event_type, seq, created_at, event.data)
    return envelope, envelope_frame(envelope, data_text)


Outcome = tuple[int, datetime, str] | BaseException


class EventWriter:
    """Stores the events of every user of this process, in batches, and publishes them."""

    def __init__(
        self,
        *,
        publish: Publish,
        max_batch: int = MAX_BATCH,
        max_queue: int = MAX_QUEUE,
        inline: InlineStore | None = None,
    ) -> None:
        self._publish = publish
        # SQLite: small batches stored on the loop's thread when they can be (inline.py).
        self._inline = inline
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._queue: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # Its own thread (and database connection): event writes never wait
        # behind other database work, and other work never waits behind them.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-writer")
        self._closed = False
        self.batches = 0
        self.inline_batches = 0
        _writers.add(self)

    async def write(self, run: RunRef, event: NewEvent, called_at: float) -> dict[str, Any]:
        """Queue the event; return its envelope once it is stored and published."""
        future = asyncio.get_running_loop().create_future()
        self._append(run, event, called_at, future)
        # Shielded: a caller cancelled meanwhile does not unqueue its event.
        return await asyncio.shield(future)

    async def enqueue(self, run: RunRef, event: NewEvent, called_at: float) -> None:
        """Queue the event and return; wait only while the queue is over its bound.

        The event is stored and published in its place in the order, like any
        other; the caller just does not wait for it (streamed text keeps
        flowing while earlier events commit). A failure is logged.
        """
        pending = self._append(run, event, called_at, None)
        if len(self._queue) > self._max_queue:
            # Still queued: the writer runs only once this coroutine yields.
            pending.future = asyncio.get_running_loop().create_future()
            pending.future.add_done_callback(_retrieved)
            await asyncio.shield(pending.future)

    def _append(
        self,
        run: RunRef,
        event: NewEvent,
        called_at: float,
        future: "asyncio.Future[dict[str, Any]] | None",
    ) -> _Pending:
        pending = _Pending(run, event, called_at, future)
        self._queue.append(pending)
        self._ensure_running(asyncio.get_running_loop())
        return pending

    def _ensure_running(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="event-writer")
        assert self._wake is not None
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        batch: list[_Pending] = []
        outcomes: list[Outcome] | None = None
        try:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    # Woken from idle by the first event: one more turn of the loop
                    # lets the events its run emits in the same turn (a short run's
                    # whole life) join its batch instead of waiting for the next.
                    await asyncio.sleep(0)
                    continue
                batch = self._queue[: self._max_batch]
                del self._queue[: len(batch)]
                taken = time.time()
                outcomes = self._store_here(batch)
                if outcomes is None:
                    outcomes = await loop.run_in_executor(self._executor, _store, batch)
                self.batches += 1
                _observe(batch, taken)
                await self._finish(batch, outcomes)
                batch, outcomes = [], None
        except asyncio.CancelledError:
            self._stopped(batch, outcomes)
            raise

    def _stopped(self, batch: list[_Pending], outcomes: list[Outcome] | None) -> None:
        """Tell every waiting writer of the batch in hand and of the queue that this one stopped.

        The batch in hand: its outcomes if its store ended (stored events are
        stored, their sockets catch up on resume), else that it may or may not
        have been stored (its transaction may still commit on the thread).
        """
        queued, self._queue = self._queue, []
        if queued or (batch and outcomes is None):
            logger.warning(
                "event writer stopped: %s queued events not stored, %s being stored",
                len(queued),
                len(batch) if outcomes is None else 0,
            )
        if outcomes is None:
            outcomes = [
                RuntimeError("event writer stopped while storing the event; it may be stored")
                for _ in batch
            ]
        for pending, outcome in zip(batch, outcomes, strict=True):
            _resolve(pending, outcome)
        for pending in queued:
            _resolve(pending, RuntimeError("event writer stopped"))

    def _store_here(self, batch: list[_Pending]) -> list[Outcome] | None:
        """Store the batch on the loop's thread if the InlineStore takes it; else None."""
        if self._inline is None:
            return None
        stored = self._inline.store(
            [p.event for p in batch], lambda i, seq, at, text: batch[i].encode(seq, at, text)
        )
        if stored is None:
            return None
        self.inline_batches += 1
        return list(stored)

    async def _finish(self, batch: list[_Pending], outcomes: list[Outcome]) -> None:
        stored = [
            StoredEvent(pending.event.user_id, outcome[0], outcome[2], pending.called_at)
            for pending, outcome in zip(batch, outcomes, strict=True)
            if not isinstance(outcome, BaseException)
        ]
        try:
            await self._publish(stored)
        except Exception:
            # publish handles its own failures; anything else must not stop the writer.
            logger.exception("publishing %s events failed", len(stored))
        for pending, outcome in zip(batch, outcomes, strict=True):
            _resolve(pending, outcome)

    def close(self) -> None:
        """Close the writer thread's database connections and stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._executor.submit(connections.close_all).result()
        self._executor.shutdown(wait=True)
        if self._inline is not None:
            self._inline.close()


# Every writer of this process, so that all can be closed at exit (and by tests,
# before their database is dropped).
_writers: "weakref.WeakSet[EventWriter]" = weakref.WeakSet()


def close_writers() -> None:
    """Close every EventWriter of this process (their threads and database connections)."""
    for writer in list(_writers):
        writer.close()


def store_now(run: RunRef, events: Sequence[NewEvent]) -> list[dict[str, Any]]:
    """Store events of one run at once, frames included, as the writer does; return envelopes.

    Synchronous, without publishing: for scripts and seeding, not for live runs.
    """
    envelopes: list[dict[str, Any]] = []

    def encode(index: int, seq: int, created_at: datetime, data_text: str) -> str:
        envelope, frame = _envelope_and_frame(run, events[index], seq, created_at, data_text)
        envelopes.append(envelope)
        return frame

    events_record(events, encode=encode)
    return envelopes


def _observe(batch: list[_Pending], taken: float) -> None:
    """Record the batch's size, its oldest event's wait and its store time (back on the loop)."""
    EVENT_BATCH_SIZE.observe(len(batch))
    EVENT_BATCH_WAIT_SECONDS.observe(max(0.0, taken - batch[0].called_at))
    EVENT_BATCH_SECONDS.observe(max(0.0, time.time() - taken))


def _resolve(pending: _Pending, outcome: Outcome) -> None:
    """Give the event's waiting writer, if any, its envelope or its failure."""
    # An enqueued event has no future: its failure was logged where it happened (_failed).
    if pending.future is None or pending.future.done():
        return
    if isinstance(outcome, BaseException):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(pending.envelope)


def _retrieved(future: "asyncio.Future[dict[str, Any]]") -> None:
    # The failure was logged where it happened; nobody awaits an enqueued event.
    if not future.cancelled():
        future.exception()


def _store(batch: list[_Pending]) -> list[Outcome]:
    """Store a batch in one transaction; if that fails, each event alone (on the writer thread)."""
    close_old_connections()
    if len(batch) > 1:
        try:
            return list(_record(batch))
        except OutcomeUnknown as exc:
            # Stored or not, nobody can tell: storing each again could store it twice.
            return [_failed(pending, exc) for pending in batch]
        except Exception:
            close_old_connections()
    # One failing event (or a single one) must not take the others down with it.
    outcomes: list[Outcome] = []
    for pending in batch:
        try:
            outcomes.extend(_record([pending]))
        except Exception as exc:
            outcomes.append(_failed(pending, exc))
    return outcomes


def _record(batch: list[_Pending]) -> list[tuple[int, datetime, str]]:
    return events_record(
        [p.event for p in batch], encode=lambda i, seq, at, text: batch[i].encode(seq, at, text)
    )


def _failed(pending: _Pending, exc: Exception) -> Exception:
    event = pending.event
    logger.error(
        "storing a %s event failed user_id=%s run_id=%s: %r",
        event.event_type,
        event.user_id,
        event.run_id,
        exc,
        exc_info=exc,
        extra={"user_id": event.user_id, "run_id": event.run_id},
    )
    close_old_connections()
    return exc
