"""Sanitising of tool parameters and results before they are stored or sent."""

import math
from typing import Any

SENSITIVE_KEY_PARTS = ("password", "secret", "key", "token", "auth", "credential")
REDACTED = "[REDACTED]"
PARAMETER_STRING_LIMIT = 200
RESULT_STRING_LIMIT = 500
RESULT_LIST_LIMIT = 10
MAX_DEPTH = 20


def is_sensitive_key(key: object) -> bool:
    """Tell whether a mapping key names a secret."""
    lowered = str(key).lower()
    return any(part in lowered for part in SENSITIVE_KEY_PARTS)


def _clean(value: Any, *, string_limit: int, list_limit: int | None, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        return "[TRUNCATED]"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        # JSON has no NaN or infinity (PostgreSQL's jsonb refuses them, browsers'
        # JSON.parse too): they travel as their text, "nan", "inf" or "-inf".
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value[:string_limit]
    if isinstance(value, dict):
        return {
            str(k)[:string_limit]: (
                REDACTED
                if is_sensitive_key(k)
                else _clean(v, string_limit=string_limit, list_limit=list_limit, depth=depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if list_limit is not None:
            items = items[:list_limit]
        return [
            _clean(v, string_limit=string_limit, list_limit=list_limit, depth=depth + 1)
            for v in items
        ]
    # Anything else (datetimes, decimals, objects) travels as its text.
    return str(value)[:string_limit]


def sanitize_parameters(parameters: Any) -> Any:
    """Redact secret keys and cut strings at 200 characters, at any depth."""
    return _clean(parameters, string_limit=PARAMETER_STRING_LIMIT, list_limit=None)


def sanitize_result(result: Any) -> Any:
    """Redact secret keys, cut strings at 500 characters and lists at 10 items."""
    return _clean(result, string_limit=RESULT_STRING_LIMIT, list_limit=RESULT_LIST_LIMIT)
