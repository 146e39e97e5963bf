"""The EventEmitter: the only way an agent event leaves the runtime."""

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer

from agents.services import event_record
from realtime.groups import user_group
from realtime.metrics import DELIVERY_FAILURES, EVENTS_EMITTED
from realtime.schema import clean_event_data

logger = logging.getLogger(__name__)

EVENT_MESSAGE_TYPE = "agent.event"


@dataclass(frozen=True)
class RunRef:
    """What an event needs to know about its run."""

    run_id: str
    thread_id: str
    agent_name: str


def encode_frame(payload: dict[str, Any]) -> str:
    """Encode a server -> client frame as compact JSON text."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


def iso_utc(moment: Any) -> str:
    """Format an aware datetime as ISO-8601 UTC with a Z suffix."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class EventEmitter:
    """Validate, sanitise, number, persist and publish one user's events."""

    def __init__(self, *, user_id: int, channel_layer: BaseChannelLayer) -> None:
        if channel_layer is None:
            # Without a layer nothing reaches a socket: refuse to exist rather
            # than run silently, the failure this product was built to end.
            raise ValueError("EventEmitter needs a channel layer (CHANNEL_LAYERS['default'])")
        self.user_id = int(user_id)
        self.group = user_group(self.user_id)
        self.channel_layer = channel_layer
        # One user's events are numbered, stored and published in one order.
        self._lock = asyncio.Lock()

    async def emit(
        self,
        run: RunRef,
        event_type: str,
        data: dict[str, Any],
        *,
        run_change: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store the event (with a run's start or end), send it to the user's sockets."""
        called_at = time.time()
        cleaned = clean_event_data(event_type, data)
        # Shielded: a run cancelled mid-emit must not leave an event stored but unsent.
        return await asyncio.shield(self._emit(run, event_type, cleaned, called_at, run_change))

    async def _emit(
        self,
        run: RunRef,
        event_type: str,
        cleaned: dict[str, Any],
        called_at: float,
        run_change: dict[str, Any] | None,
    ) -> dict[str, Any]:
        async with self._lock:
            seq, created_at = await database_sync_to_async(event_record)(
                user_id=self.user_id,
                run_id=run.run_id,
                event_type=event_type,
                data=cleaned,
                run_change=run_change,
            )
            envelope = {
                "type": event_type,
                "seq": seq,
                "run_id": run.run_id,
                "thread_id": run.thread_id,
                "agent_name": run.agent_name,
                "timestamp": iso_utc(created_at),
                "data": cleaned,
            }
            EVENTS_EMITTED.labels(event_type).inc()
            await self._deliver(seq, encode_frame(envelope), called_at)
        return envelope

    async def _deliver(self, seq: int, text: str, called_at: float) -> None:
        message = {"type": EVENT_MESSAGE_TYPE, "seq": seq, "text": text, "t": called_at}
        try:
            await self.channel_layer.group_send(self.group, message)
        except Exception:
            # The event is stored: a client that resumes still gets it. Say so loudly.
            DELIVERY_FAILURES.inc()
            logger.exception(
                "live delivery failed user_id=%s seq=%s group=%s; event kept for resume",
                self.user_id,
                seq,
                self.group,
                extra={"user_id": self.user_id, "seq": seq},
            )
