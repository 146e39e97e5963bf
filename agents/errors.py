"""Errors raised by agent services, each with its wire-protocol error code."""

import secrets
from typing import Any


def reference() -> str:
    """Return a short id that ties a message a user sees to its detail in the log and admin."""
    return secrets.token_hex(4)


class ServiceError(Exception):
    """A request that cannot be served; `code` is the protocol error code."""

    code = "invalid_message"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidRequest(ServiceError):
    """The request is malformed or its values are out of range."""

    code = "invalid_message"


class UnknownAgent(ServiceError):
    """No enabled agent has that name."""

    code = "unknown_agent"


class NotFound(ServiceError):
    """The run or thread does not exist for this user."""

    code = "not_found"


class ThreadBusy(ServiceError):
    """The thread has a run going and the client asked to reject."""

    code = "thread_busy"


class TooManyRuns(ServiceError):
    """The user already has the maximum number of concurrent runs."""

    code = "too_many_runs"


class RateLimited(ServiceError):
    """The user starts runs faster than allowed."""

    code = "rate_limited"


class MessageTooLarge(ServiceError):
    """The user's message is longer than allowed."""

    code = "message_too_large"


class AlreadyResolved(ServiceError):
    """The input request was already decided (or has expired)."""

    code = "already_resolved"
