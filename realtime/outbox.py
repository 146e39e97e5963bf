"""RemoteOutbox: the events for other processes, sent in order off the writer's path.

The writer stores a batch and the hub hands it to this process's sockets at
once; the layer messages for the other processes are put here, and the writer
goes on with its next batch while one task sends them. That task sends
everything queued so far in one `group_send_many` (one Redis round trip), in
the order it was put, so each user's events still reach the other processes in
seq order. A failed send is counted and logged; the events are stored, and a
socket elsewhere fills the hole from the database at the user's next event or
its client's resume. The queue is bounded: past `max_events`, `put` waits until
the sender takes the queue, so a slow Redis slows the writer as it did when
each batch waited for its own send.
"""

import asyncio
import logging
from typing import Any

from channels.layers import BaseChannelLayer

from realtime.layers import Messages, group_send_many
from realtime.metrics import DELIVERY_FAILURES, OUTBOX_EVENTS

logger = logging.getLogger("realtime.hub")

MAX_EVENTS = 10_000


class RemoteOutbox:
    """Sends layer messages in the order they were put, many in one round trip."""

    def __init__(self, layer: BaseChannelLayer, *, max_events: int = MAX_EVENTS) -> None:
        self._layer = layer
        self._max_events = max_events
        self._queue: Messages = []
        self._events = 0  # events in the queue (each message carries one user's events)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None  # set while nothing is queued or sending
        self._taken: asyncio.Future[None] | None = None  # a full queue's waiter

    async def put(self, messages: Messages, events: int) -> None:
        """Queue the messages behind those put before; wait only while the queue is full."""
        self._queue.extend(messages)
        self._events += events
        OUTBOX_EVENTS.inc(events)
        self._ensure_running()
        if self._events > self._max_events:
            if self._taken is None:
                self._taken = asyncio.get_running_loop().create_future()
            # Shielded: a put cancelled meanwhile leaves its messages queued all the same.
            await asyncio.shield(self._taken)

    async def drain(self) -> None:
        """Wait until everything put so far is sent (or its send failed, or its sender died)."""
        while self._idle is not None:
            if self._queue and (self._task is None or self._task.done()):
                self._ensure_running()  # a dead sender's queue: a new one sends it
            idle = self._idle
            await idle.wait()
            if not self._queue:
                return

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            # A sender that died (cancelled) is replaced; a put waiting for room on this
            # loop keeps its future, which the new sender resolves when it takes the queue.
            self._wake, self._idle = asyncio.Event(), asyncio.Event()
            if self._taken is not None and self._taken.get_loop() is not loop:
                self._taken = None
            self._task = loop.create_task(self._run(), name="remote-outbox")
        assert self._wake is not None and self._idle is not None
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        wake, idle = self._wake, self._idle
        assert wake is not None and idle is not None
        try:
            while True:
                if not self._queue:
                    idle.set()
                    wake.clear()
                    await wake.wait()
                    continue
                messages, self._queue = self._queue, []
                count, self._events = self._events, 0
                if self._taken is not None:
                    self._taken.set_result(None)
                    self._taken = None
                await self._send(messages, count)
        finally:
            idle.set()  # not sending any more: a drain waiting on it looks at the queue again

    async def _send(self, messages: Messages, count: int) -> None:
        try:
            await group_send_many(self._layer, messages)
        except Exception:
            # The events are stored: a client that resumes still gets them. Say so loudly.
            DELIVERY_FAILURES.inc(count)
            first = messages[0][1]
            logger.exception(
                "live delivery failed (%s); events kept for resume",
                ranges(messages),
                extra={"user_id": first["user_id"], "seq": first["events"][0][0]},
            )
        finally:
            OUTBOX_EVENTS.dec(count)  # sent, failed, or dropped by a cancelled sender


def ranges(messages: Messages) -> str:
    """Name each user's seqs in the messages: 'user_id=7 seq=3..6, user_id=9 seq=1..1'."""
    seqs: dict[Any, list[int]] = {}
    for _, message in messages:
        seqs.setdefault(message["user_id"], []).extend(int(item[0]) for item in message["events"])
    return ", ".join(f"user_id={user} seq={min(s)}..{max(s)}" for user, s in seqs.items())
