"""Reads of agents, runs and events."""

import uuid

from django.db.models import QuerySet

from agents.errors import UnknownAgent
from agents.models import Agent, Run, RunEvent, UserEventCounter


def agent_get_enabled(*, name: str) -> Agent:
    """Return the enabled agent called `name`, or raise UnknownAgent."""
    agent = Agent.objects.filter(name=name, enabled=True).first()
    if agent is None:
        raise UnknownAgent(f"no enabled agent named {name!r}")
    return agent


def user_last_seq(*, user_id: int) -> int:
    """Return the seq of the user's latest event (0 if none)."""
    value = (
        UserEventCounter.objects.filter(user_id=user_id).values_list("last_seq", flat=True).first()
    )
    return int(value or 0)


def events_after(
    *, user_id: int, seq: int, limit: int = 500, through_seq: int | None = None
) -> QuerySet[RunEvent]:
    """Return up to `limit` of the user's events with seq > `seq` (and <= through_seq), in order."""
    events = RunEvent.objects.filter(user_id=user_id, seq__gt=seq)
    if through_seq is not None:
        events = events.filter(seq__lte=through_seq)
    return events.select_related("run__agent").order_by("seq")[:limit]


def count_between(*, user_id: int, after_seq: int, through_seq: int) -> int:
    """Count the user's stored events with after_seq < seq <= through_seq."""
    return RunEvent.objects.filter(user_id=user_id, seq__gt=after_seq, seq__lte=through_seq).count()


def run_get_active(*, user_id: int, run_id: str) -> Run | None:
    """Return the user's queued or running run with that id, or None."""
    try:
        pk = uuid.UUID(str(run_id))
    except ValueError:
        return None
    return Run.objects.filter(
        pk=pk, user_id=user_id, status__in=(Run.Status.QUEUED, Run.Status.RUNNING)
    ).first()
