"""Reads of agents, runs and events."""

import uuid
from typing import Any

from django.db.models import QuerySet

from agents import sql
from agents.errors import UnknownAgent
from agents.models import Agent, InputRequest, Run, RunEvent, Thread


def agent_get_enabled(*, name: str) -> Agent:
    """Return the enabled agent called `name`, or raise UnknownAgent."""
    # Written out (agents/sql.py): every start reads it.
    where = f"{sql.column(Agent, 'name')} = %s AND {sql.column(Agent, 'enabled')} = %s"
    found = sql.select(Agent, where, [name, True], limit=1)
    if not found:
        raise UnknownAgent(f"no enabled agent named {name!r}")
    return found[0]


def run_get_active(*, user_id: int, run_id: str) -> Run | None:
    """Return the user's queued or running run with that id, or None."""
    try:
        pk = uuid.UUID(str(run_id))
    except ValueError:
        return None
    return Run.objects.filter(pk=pk, user_id=user_id, status__in=Run.ACTIVE).first()


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
    """Return the enabled agents for pickers: name, description and implementation."""
    return [
        {"name": a.name, "description": a.description, "implementation": a.implementation}
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


def runs_active_count(*, user_id: int, exclude: list[str]) -> int:
    """Count the user's queued or running runs in any process, leaving out `exclude`."""
    # Written out (agents/sql.py): every start counts them.
    where, params = _active_runs_where(user_id, exclude)
    row = sql.fetch_one(f"SELECT COUNT(*) FROM {sql.table(Run)} WHERE {where}", params)
    assert row is not None
    return int(row[0])


def run_active_in_thread(*, user_id: int, thread_id: str, exclude: list[str]) -> Run | None:
    """Return a queued or running run of the user's thread not in `exclude`, if any."""
    # Written out (agents/sql.py): every start in a thread asks.
    where, params = _active_runs_where(user_id, exclude)
    where += f" AND {sql.column(Run, 'thread')} = %s"
    params.append(sql.prep(Run, "thread", thread_id))
    found = sql.select(Run, where, params, order=f"{sql.column(Run, 'created_at')} DESC", limit=1)
    return found[0] if found else None


def _active_runs_where(user_id: int, exclude: list[str]) -> tuple[str, list[Any]]:
    """The condition for the user's queued or running runs but those in `exclude`."""
    active = list(Run.ACTIVE)
    user, status = sql.column(Run, "user"), sql.column(Run, "status")
    where = f"{user} = %s AND {status} IN ({sql.marks(active)})"
    params: list[Any] = [user_id, *active]
    if exclude:
        where += f" AND {sql.column(Run, 'id')} NOT IN ({sql.marks(exclude)})"
        params += [sql.prep(Run, "id", run_id) for run_id in exclude]
    return where, params


def run_is_active(*, run_id: str) -> bool:
    """Tell whether a run is still queued or running."""
    return Run.objects.filter(pk=run_id, status__in=Run.ACTIVE).exists()


def run_has_events(*, run_id: str) -> bool:
    """Tell whether any event of the run is stored."""
    return RunEvent.objects.filter(run_id=run_id).exists()


def input_get(*, interrupt_id: str) -> InputRequest | None:
    """Return the input request with that id, or None."""
    return InputRequest.objects.filter(pk=interrupt_id).first()


def input_for_user(*, user_id: int, interrupt_id: str) -> InputRequest | None:
    """Return the user's input request (with its run), or None: another user's is not found."""
    return (
        InputRequest.objects.select_related("run").filter(pk=interrupt_id, user_id=user_id).first()
    )


def inputs_pending_events(*, user_id: int) -> QuerySet[RunEvent]:
    """Return the `input_requested` events of the user's requests still pending, in seq order."""
    pending = InputRequest.objects.filter(
        user_id=user_id, outcome=InputRequest.Outcome.PENDING
    ).values_list("pk", flat=True)
    return (
        RunEvent.objects.filter(
            user_id=user_id, type="input_requested", payload__interrupt_id__in=list(pending)
        )
        .select_related("run__agent")
        .order_by("seq")
    )


def inputs_unreported(*, run_id: str) -> list[InputRequest]:
    """Return a run's requests that have an `input_requested` event but no `input_resolved`."""
    events = RunEvent.objects.filter(
        run_id=run_id, type__in=("input_requested", "input_resolved")
    ).order_by("seq")
    asked: list[str] = []
    told: set[str] = set()
    for kind, payload in events.values_list("type", "payload"):
        if kind == "input_requested":
            asked.append(payload["interrupt_id"])
        else:
            told.add(payload["interrupt_id"])
    rows = InputRequest.objects.in_bulk([i for i in asked if i not in told])
    return [rows[i] for i in asked if i in rows]
