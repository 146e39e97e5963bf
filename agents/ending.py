"""How every run ends: completed, failed, cancelled, interrupted, or orphaned by a dead process.

One place builds each ending's terminal event and the run change that commits
with it, and one function emits it: a run that never got to emit
`agent_started` emits it first, so every run tells a whole story.
"""

from dataclasses import dataclass, replace
from typing import Any

from agents.events.emitter import EventEmitter, RunRef
from agents.metrics import RUNS_FINISHED
from agents.models import Run


@dataclass(frozen=True)
class RunEnding:
    """A run's terminal event, its data, and the run change committed with it."""

    status: str
    event_type: str
    data: dict[str, Any]
    run_change: dict[str, Any]

    def with_usage(self, usage: dict[str, int]) -> "RunEnding":
        """Return this ending with the run's token usage stored (and shown on completion)."""
        data = {**self.data, "usage": usage} if self.event_type == "agent_completed" else self.data
        return replace(self, data=data, run_change={**self.run_change, **usage})


def completed(result: str, duration_ms: int) -> RunEnding:
    """End a run with its answer."""
    return RunEnding(
        Run.Status.COMPLETED,
        "agent_completed",
        {"status": "completed", "result": result, "duration_ms": duration_ms},
        {"status": Run.Status.COMPLETED, "result": result},
    )


def failed(code: str, message: str, *, detail: str = "") -> RunEnding:
    """End a run with an error users see (`message`); `detail` is for the admin only."""
    return _error(Run.Status.FAILED, code, message, detail)


def interrupted(message: str) -> RunEnding:
    """End a run whose process stopped (or is stopping) under it."""
    return _error(Run.Status.INTERRUPTED, "interrupted", message, "")


def cancelled(reason: str) -> RunEnding:
    """End a run stopped by its user or by a newer message."""
    return RunEnding(
        Run.Status.CANCELLED,
        "agent_cancelled",
        {"reason": reason},
        {"status": Run.Status.CANCELLED, "error_code": "cancelled", "error_message": reason},
    )


def _error(status: str, code: str, message: str, detail: str) -> RunEnding:
    return RunEnding(
        status,
        "agent_error",
        {"error": {"code": code, "message": message}},
        {"status": status, "error_code": code, "error_message": detail or message},
    )


async def run_end(
    emitter: EventEmitter, ref: RunRef, ending: RunEnding, *, started: bool, message: str
) -> None:
    """Emit the run's ending (after `agent_started` if it never started) and count it."""
    if not started:
        await emitter.emit(ref, "agent_started", {"message": message})
    await emitter.emit(ref, ending.event_type, ending.data, run_change=ending.run_change)
    RUNS_FINISHED.labels(ending.status).inc()
