"""Server -> client frames as text: one encoding, shared by live sends and replay."""

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson


@dataclass(frozen=True)
class RunRef:
    """What an event needs to know about its run."""

    run_id: str
    thread_id: str
    agent_name: str


# orjson writes JSON that parses to what json.dumps(ensure_ascii=False,
# separators=(",", ":"), default=str) wrote, in a tenth of the time (encoding
# was 9 % of daphne's samples at capacity, bench/RESULTS.md). Datetimes and
# dataclasses go to `default` (str), as with json. Two differences, neither
# reachable from sanitised event data: an Enum that is not also a str or an int
# is its value, not its str(); a non-finite float is null (json.dumps wrote NaN,
# which JSON parsers refuse; the sanitiser makes such floats text first,
# agents/events/sanitize.py). What orjson refuses (integers over 64 bits,
# keys that are not strings, nesting over 255, lone surrogates) json.dumps
# encodes, as before.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def compact_json(value: Any) -> str:
    """Encode a value as compact JSON text, non-ASCII as itself, anything else as its str()."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def encode_frame(payload: dict[str, Any]) -> str:
    """Encode a server -> client frame as compact JSON text."""
    return compact_json(payload)


def encode_data(data: dict[str, Any]) -> str:
    """Encode an event's data as compact JSON text: its stored payload, and part of its frame."""
    return compact_json(data)


# The events of a batch share one timestamp: formatted once, not once per event.
@functools.lru_cache(maxsize=16)
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


def envelope_frame(envelope: dict[str, Any], data_text: str) -> str:
    """Return encode_frame(envelope) for an event_envelope whose data is already encode_data'd.

    The same text, without encoding the data a second time (the writer stores
    that text as the payload too); "data" is the envelope's last key.
    """
    head = encode_frame({key: value for key, value in envelope.items() if key != "data"})
    return f'{head[:-1]},"data":{data_text}}}'
