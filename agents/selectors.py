"""Reads of agents, runs and events."""

import uuid

from django.db.models import QuerySet

from agents.errors import UnknownAgent
from agents.models import Agent, Run, RunEvent, Thread, UserEventCounter


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


def _after(user_id: int, seq: int, through_seq: int | None) -> QuerySet[RunEvent]:
    """The user's events with seq > `seq` (and <= through_seq), in seq order."""
    events = RunEvent.objects.filter(user_id=user_id, seq__gt=seq)
    if through_seq is not None:
        events = events.filter(seq__lte=through_seq)
    return events.order_by("seq")


def events_after(
    *, user_id: int, seq: int, limit: int = 500, through_seq: int | None = None
) -> QuerySet[RunEvent]:
    """Return up to `limit` of the user's events with seq > `seq` (and <= through_seq), in order."""
    return _after(user_id, seq, through_seq).select_related("run__agent")[:limit]


def frames_after(
    *, user_id: int, seq: int, limit: int = 500, through_seq: int | None = None
) -> list[tuple[int, str]]:
    """Return (seq, stored frame) of up to `limit` of the user's events after `seq`, in order."""
    return list(_after(user_id, seq, through_seq).values_list("seq", "frame")[:limit])


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


def threads_for_user(*, user_id: int, limit: int = 50) -> list[dict[str, object]]:
    """Return the user's latest threads with their last activity, newest first."""
    return [
        {
            "id": str(t.id),
            "title": t.title or "Conversation",
            "created_at": t.created_at.isoformat(),
        }
        for t in Thread.objects.filter(user_id=user_id).order_by("-created_at")[:limit]
    ]


def thread_for_user(*, user_id: int, thread_id: str) -> Thread | None:
    """Return the user's thread with that id, or None (also for malformed ids)."""
    try:
        pk = uuid.UUID(str(thread_id))
    except ValueError:
        return None
    return Thread.objects.filter(pk=pk, user_id=user_id).first()


def thread_events(*, thread: Thread, limit: int = 2000) -> QuerySet[RunEvent]:
    """Return the latest `limit` stored events of a thread's runs, in seq order."""
    newest = (
        RunEvent.objects.filter(run__thread=thread).order_by("-seq").values_list("seq", flat=True)
    )[:limit]
    return (
        RunEvent.objects.filter(run__thread=thread, seq__in=list(newest))
        .select_related("run__agent")
        .order_by("seq")
    )


def agents_enabled() -> list[dict[str, str]]:
    """Return the enabled agents for pickers."""
    return [
        {"name": a.name, "description": a.description}
        for a in Agent.objects.filter(enabled=True).order_by("name")
    ]


def thread_history(
    *, thread_id: str, before_run_id: str, budget_chars: int
) -> list[dict[str, str]]:
    """Return the thread's earlier exchanges as chat messages, newest kept within the budget."""
    runs = (
        Run.objects.filter(thread_id=thread_id, status=Run.Status.COMPLETED)
        .exclude(pk=before_run_id)
        .order_by("-created_at")
        .values_list("message", "result")
    )
    kept: list[dict[str, str]] = []
    used = 0
    for message, result in runs[:100]:
        cost = len(message) + len(result)
        if used + cost > budget_chars:
            break
        kept[:0] = [{"role": "user", "content": message}, {"role": "assistant", "content": result}]
        used += cost
    return kept
