"""State changes of runs: admitted and created, started, finished, interrupted."""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents import sql
from agents.errors import NotFound, RateLimited, ThreadBusy, TooManyRuns
from agents.identity import PROCESS_NAME
from agents.models import Agent, Run, StartBucket, Thread
from agents.selectors import run_active_in_thread, runs_active_count


@dataclass(frozen=True)
class RunDraft:
    """A run asked for: whose, which agent, where, with what, and what if its thread is busy."""

    user_id: int
    session_id: int | None
    agent: Agent
    thread_id: str | None
    message: str
    options: dict[str, Any]
    request_id: str
    on_busy: str = "enqueue"
    # A thread_id nobody has yet becomes a new thread of this user.
    create_thread: bool = False


@dataclass(frozen=True)
class LocalRuns:
    """What this process knows of the user's runs: ids here, thread busy here, runs leaving."""

    run_ids: list[str]
    thread_busy: bool = False
    leaving: int = 0


@dataclass(frozen=True)
class RunLimits:
    """The per-user limits a new run must fit: concurrent runs and the start rate."""

    max_runs: int
    rate: float
    burst: int


def run_create(draft: RunDraft) -> Run:
    """Create a queued run in the user's thread (a new thread when none is given)."""
    # No savepoint when inside run_admit's transaction: a failure here fails it all.
    # The inserts and the thread's read are written out (agents/sql.py): every start makes them.
    with transaction.atomic(savepoint=False):
        if draft.thread_id is None:
            thread = Thread(user_id=draft.user_id, title=draft.message[:200])
            sql.insert(thread)
        else:
            found: Thread | None
            if draft.create_thread:
                # get_or_create: two first runs of one new thread at once make it once.
                found, _ = Thread.objects.get_or_create(
                    id=draft.thread_id,
                    defaults={"user_id": draft.user_id, "title": draft.message[:200]},
                )
            else:
                where = f"{sql.column(Thread, 'id')} = %s"
                rows = sql.select(Thread, where, [sql.prep(Thread, "id", draft.thread_id)], limit=1)
                found = rows[0] if rows else None
            if found is None or found.user_id != draft.user_id:
                raise NotFound("no such thread")
            thread = found
        run = Run(
            user_id=draft.user_id,
            session_id=draft.session_id,
            agent=draft.agent,
            thread=thread,
            request_id=draft.request_id,
            message=draft.message,
            options=draft.options,
            process=PROCESS_NAME,
        )
        sql.insert(run)
        return run


def run_mark_running(*, run_id: str) -> datetime:
    """Mark a queued run as running and return its start time."""
    now = timezone.now()
    sql.execute(*_running(run_id, now))
    return now


def run_wait_input(*, run_id: str) -> None:
    """Mark a running run as waiting for its user."""
    sql.execute(*_waiting(run_id))


def run_resume_input(*, run_id: str) -> None:
    """Mark a run that was waiting for its user as running again."""
    sql.execute(*_resumed(run_id))


def run_finish(*, run_id: str, **outcome: Any) -> None:
    """Record the end of a run and its token usage (the fields `_ended` takes).

    An ended run keeps its first outcome; an unknown field is a TypeError.
    """
    sql.execute(*_ended(run_id, **outcome))


# A statement: its SQL text (with %s placeholders) and its parameters.
Statement = tuple[str, list[Any]]


def _running(run_id: str, now: datetime) -> Statement:
    return _run_update(run_id, {"status": Run.Status.RUNNING, "started_at": now})


def _waiting(run_id: str) -> Statement:
    return _run_update(run_id, {"status": Run.Status.WAITING_INPUT}, only_if=[Run.Status.RUNNING])


def _resumed(run_id: str) -> Statement:
    return _run_update(run_id, {"status": Run.Status.RUNNING}, only_if=[Run.Status.WAITING_INPUT])


def _ended(
    run_id: str,
    *,
    status: str,
    result: str = "",
    error_code: str = "",
    error_message: str = "",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
) -> Statement:
    values = {
        "status": status,
        "finished_at": timezone.now(),
        "result": result,
        "error_code": error_code,
        "error_message": error_message[:2000],
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
    }
    return _run_update(run_id, values, unless=list(Run.TERMINAL))


def _run_update(
    run_id: str,
    values: dict[str, Any],
    *,
    only_if: Sequence[str] = (),
    unless: Sequence[str] = (),
) -> Statement:
    """The UPDATE of one run's fields, if its status is in `only_if` / not in `unless`.

    Written out (agents/sql.py): the run changes commit with events in the
    writer's batches (two per run, at least).
    """
    columns = [f"{sql.column(Run, name)} = %s" for name in values]
    params = [sql.prep(Run, name, value) for name, value in values.items()]
    where = [f"{sql.column(Run, 'id')} = %s"]
    params.append(sql.prep(Run, "id", run_id))
    for statuses, operator in ((only_if, "IN"), (unless, "NOT IN")):
        if statuses:
            where.append(f"{sql.column(Run, 'status')} {operator} ({sql.marks(statuses)})")
            params.extend(statuses)
    text = f"UPDATE {sql.table(Run)} SET {', '.join(columns)} WHERE {' AND '.join(where)}"
    return text, params


def run_change_statement(*, run_id: str, change: dict[str, Any]) -> Statement:
    """Return the UPDATE of the run change an event commits with (started, waiting, resumed, ended).

    Not run here: the event's store runs it in its own transaction, on whichever
    connection stores the batch (agents/events/store.py, inline.py).
    """
    status = change["status"]
    if status == Run.Status.RUNNING:
        return _resumed(run_id) if change.get("resumed") else _running(run_id, timezone.now())
    if status == Run.Status.WAITING_INPUT:
        return _waiting(run_id)
    return _ended(run_id, **change)


def run_change_apply(*, run_id: str, change: dict[str, Any]) -> None:
    """Apply the run change an event commits with: started, waiting, resumed, or ended."""
    sql.execute(*run_change_statement(run_id=run_id, change=change))


def run_claim_interrupted(*, run_id: str, message: str) -> bool:
    """Mark an active run interrupted; True only for the one caller that changed it."""
    return bool(
        Run.objects.filter(pk=run_id, status__in=Run.ACTIVE).update(
            status=Run.Status.INTERRUPTED,
            finished_at=timezone.now(),
            error_code="interrupted",
            error_message=message,
        )
    )


def start_token_take(*, user_id: int, rate: float, burst: int) -> float:
    """Take a start from the user's shared bucket; 0 if taken, else seconds to wait.

    One conditional UPDATE (see StartBucket): concurrent starts in any process
    each see the others' pushes, so no more than `burst` pass at once.
    """
    if rate <= 0 or burst < 1:  # starts switched off, as a bucket that never fills
        return float("inf")
    now, interval = time.time(), 1 / rate
    latest = now + (burst - 1) * interval
    busy = sql.column(StartBucket, "busy_until")
    user = sql.column(StartBucket, "user")
    # Written out (agents/sql.py): every start takes one.
    take = (
        f"UPDATE {sql.table(StartBucket)} "
        f"SET {busy} = CASE WHEN {busy} > %s THEN {busy} ELSE %s END + %s "
        f"WHERE {user} = %s AND {busy} <= %s"
    )
    for _ in range(2):
        if sql.execute(take, [now, now, interval, user_id, latest]):
            return 0.0
        busy_until = (
            StartBucket.objects.filter(user_id=user_id).values_list("busy_until", flat=True).first()
        )
        if busy_until is not None:
            return max(busy_until - latest, 1e-3)
        # The user's first start: make the bucket (full), then take from it.
        StartBucket.objects.get_or_create(user_id=user_id)
    raise RuntimeError("start bucket missing after it was made")


def run_admit(draft: RunDraft, *, local: LocalRuns, limits: RunLimits) -> tuple[Run, Run | None]:
    """Admit and create a run in one transaction; return it and the other process's run ahead.

    Applies on_busy to a run of the thread going in another process, the
    concurrent-run limit over every process, and the shared start rate, in that
    order, so a refused request consumes no start token.
    """
    user_id = draft.user_id
    with transaction.atomic():
        remote = None
        if draft.thread_id and not local.thread_busy:
            remote = run_active_in_thread(
                user_id=user_id, thread_id=draft.thread_id, exclude=local.run_ids
            )
        if (local.thread_busy or remote is not None) and draft.on_busy == "reject":
            raise ThreadBusy("this thread has a run in progress")
        leaving = [str(remote.pk)] if remote is not None and draft.on_busy == "interrupt" else []
        elsewhere = runs_active_count(user_id=user_id, exclude=local.run_ids + leaving)
        if len(local.run_ids) - local.leaving + elsewhere >= limits.max_runs:
            raise TooManyRuns(f"at most {limits.max_runs} runs at once; stop one or wait")
        retry_after = start_token_take(user_id=user_id, rate=limits.rate, burst=limits.burst)
        if retry_after:
            raise RateLimited("starting runs too fast", retry_after=round(retry_after, 3))
        return run_create(draft), remote
