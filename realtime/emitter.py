"""The EventEmitter: the only way an agent event leaves the runtime."""

import time
from typing import Any

from channels.layers import BaseChannelLayer

from agents.services import NewEvent
from realtime.frames import EVENT_MESSAGE_TYPE, RunRef, encode_frame, iso_utc
from realtime.metrics import events_emitted
from realtime.schema import clean_event_data
from realtime.writer import EventWriter

__all__ = ["EVENT_MESSAGE_TYPE", "EventEmitter", "RunRef", "encode_frame", "iso_utc"]


class EventEmitter:
    """Validate and sanitise one user's events, then store and publish them through the writer."""

    def __init__(
        self, *, user_id: int, writer: EventWriter, channel_layer: BaseChannelLayer
    ) -> None:
        if channel_layer is None:
            # Without a layer nothing reaches a socket: refuse to exist rather
            # than run silently, the failure this product was built to end.
            raise ValueError("EventEmitter needs a channel layer (CHANNEL_LAYERS['default'])")
        if writer is None:
            raise ValueError("EventEmitter needs the process's EventWriter")
        self.user_id = int(user_id)
        self.writer = writer
        # For the session's control messages to other processes.
        self.channel_layer = channel_layer

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

    async def stream(self, run: RunRef, event_type: str, data: dict[str, Any]) -> None:
        """Like emit, but return once the event is queued (streamed text, many per second).

        It is validated now, then stored and sent in its place among the user's
        events; an emit after it returns only once both are sent.
        """
        called_at = time.time()
        await self.writer.enqueue(run, self._new_event(run, event_type, data), called_at)
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
