"""The EventEmitter: the only way an agent event leaves the runtime."""

import time
from typing import Any

from agents.events.frames import RunRef
from agents.events.schema import clean_event_data
from agents.events.store import NewEvent
from agents.events.writer import EventWriter
from agents.metrics import events_emitted

__all__ = ["EventEmitter", "RunRef"]


class EventEmitter:
    """Validate and sanitise one user's events, then store and publish them through the writer."""

    def __init__(self, *, user_id: int, writer: EventWriter) -> None:
        if writer is None:
            # Without a writer nothing is stored or published: refuse to exist rather
            # than run silently, the failure this product was built to end.
            raise ValueError("EventEmitter needs the process's EventWriter")
        self.user_id = int(user_id)
        self.writer = writer

    async def emit(
        self,
        run: RunRef,
        event_type: str,
        data: dict[str, Any],
        *,
        run_change: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store the event (with a run's start or end), send it to the user's sockets.

        Returns the envelope once the event is committed and published. Events
        are numbered in the order emit is called, across all of the user's runs.
        """
        called_at = time.time()
        event = self._new_event(run, event_type, data, run_change)
        envelope = await self.writer.write(run, event, called_at)
        events_emitted(event_type).inc()
        return envelope

    async def stream(
        self,
        run: RunRef,
        event_type: str,
        data: dict[str, Any],
        *,
        run_change: dict[str, Any] | None = None,
    ) -> None:
        """Like emit, but return once the event is queued (streamed text, many per second).

        It is validated now, then stored (with its run change) and sent in its
        place among the user's events; an emit after it returns only once both
        are sent.
        """
        called_at = time.time()
        event = self._new_event(run, event_type, data, run_change)
        await self.writer.enqueue(run, event, called_at)
        events_emitted(event_type).inc()

    def _new_event(
        self,
        run: RunRef,
        event_type: str,
        data: dict[str, Any],
        run_change: dict[str, Any] | None = None,
    ) -> NewEvent:
        """Validate and sanitise the data (raising on bad input) into an event to store."""
        return NewEvent(
            self.user_id, run.run_id, event_type, clean_event_data(event_type, data), run_change
        )
