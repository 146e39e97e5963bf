"""State changes of input requests: opened by a run, decided once (first answer wins)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from agents.models import InputRequest

PENDING = InputRequest.Outcome.PENDING


@dataclass(frozen=True)
class InputDraft:
    """An input request a run is about to make."""

    interrupt_id: str
    run_id: str
    user_id: int
    kind: str
    message: str
    request: dict[str, Any]
    expires_at: datetime


@dataclass(frozen=True)
class InputDecision:
    """How an input request was decided: outcome, by whom, and what came with it."""

    outcome: str
    by: str
    response: dict[str, Any]

    @classmethod
    def of(cls, row: InputRequest) -> "InputDecision":
        """Read the decision recorded on a row."""
        return cls(outcome=row.outcome, by=row.decided_by, response=dict(row.response or {}))


def input_open(draft: InputDraft) -> InputRequest:
    """Record a pending input request of a run."""
    return InputRequest.objects.create(
        id=draft.interrupt_id,
        run_id=draft.run_id,
        user_id=draft.user_id,
        kind=draft.kind,
        message=draft.message,
        request=draft.request,
        expires_at=draft.expires_at,
    )


def input_decide(
    *,
    interrupt_id: str,
    user_id: int,
    decision: InputDecision,
    connection_id: str = "",
    unexpired: bool = False,
) -> bool:
    """Decide a pending request in one UPDATE; True only for the one caller that decided it.

    `unexpired` (a user's answer) also requires that the request has not yet
    expired, so an answer that comes after `expires_at` loses to the timeout even
    before the waiting run has recorded it.
    """
    now = timezone.now()
    rows = InputRequest.objects.filter(pk=interrupt_id, user_id=user_id, outcome=PENDING)
    if unexpired:
        rows = rows.filter(expires_at__gt=now)
    return bool(
        rows.update(
            outcome=decision.outcome,
            decided_by=decision.by,
            decided_at=now,
            decided_connection=connection_id[:32],
            response=decision.response,
        )
    )


def inputs_close_for_run(*, run_id: str, decision: InputDecision) -> list[str]:
    """Decide every pending request of a run (its process is gone); return their ids."""
    pending = InputRequest.objects.filter(run_id=run_id, outcome=PENDING)
    return [
        interrupt_id
        for interrupt_id, user_id in pending.values_list("pk", "user_id")
        if input_decide(interrupt_id=interrupt_id, user_id=user_id, decision=decision)
    ]
