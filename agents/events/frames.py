"""Server -> client frames as text: one encoding, shared by live sends and replay."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


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


def event_envelope(
    run: RunRef, event_type: str, seq: int, created_at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """Return the wire envelope of an agent event (docs/protocol.md)."""
    return {
        "type": event_type,
        "seq": seq,
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "agent_name": run.agent_name,
        "timestamp": iso_utc(created_at),
        "data": data,
    }
