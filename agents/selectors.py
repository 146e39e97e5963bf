"""Reads of agents, runs and events."""

from django.db.models import QuerySet

from agents.errors import UnknownAgent
from agents.models import Agent, RunEvent, UserEventCounter


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


def events_after(*, user_id: int, seq: int, limit: int = 500) -> QuerySet[RunEvent]:
    """Return up to `limit` of the user's events with seq > `seq`, in order."""
    return (
        RunEvent.objects.filter(user_id=user_id, seq__gt=seq)
        .select_related("run__agent")
        .order_by("seq")[:limit]
    )


def user_first_seq(*, user_id: int) -> int | None:
    """Return the seq of the user's oldest stored event, or None if none is stored."""
    first = (
        RunEvent.objects.filter(user_id=user_id).order_by("seq").values_list("seq", flat=True)
    ).first()
    return int(first) if first is not None else None
