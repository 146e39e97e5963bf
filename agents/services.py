"""State changes of agents' sessions, runs and events (synchronous, ORM)."""

import os
import re
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from agents.errors import NotFound, RateLimited, ThreadBusy, TooManyRuns
from agents.models import (
    Agent,
    AgentSession,
    Connection,
    Run,
    RunEvent,
    StartBucket,
    Thread,
    UserEventCounter,
    WorkerProcess,
)

HOST = socket.gethostname()
# This process's name: also a valid channel-layer group suffix (letters, digits, - _ .).
PROCESS_NAME = re.sub(
    r"[^A-Za-z0-9._-]", "-", f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
)


def sessions_open(user_ids: Sequence[int]) -> dict[int, AgentSession | Exception]:
    """Record a new agent session for each user in one transaction (ValueError: no such user)."""
    wanted = sorted(set(user_ids))
    active = set(
        get_user_model().objects.filter(pk__in=wanted, is_active=True).values_list("pk", flat=True)
    )
    found = [uid for uid in wanted if uid in active]
    with transaction.atomic():
        UserEventCounter.objects.bulk_create(
            [UserEventCounter(user_id=uid) for uid in found], ignore_conflicts=True
        )
        sessions = AgentSession.objects.bulk_create(
            [AgentSession(user_id=uid, process=PROCESS_NAME) for uid in found]
        )
    result: dict[int, AgentSession | Exception] = {
        uid: ValueError(f"no active user with id {uid}") for uid in wanted
    }
    result.update(zip(found, sessions, strict=True))
    return result


def session_end(*, session_id: int) -> None:
    """Mark the session as ended."""
    now = timezone.now()
    AgentSession.objects.filter(pk=session_id, status=AgentSession.Status.ACTIVE).update(
        status=AgentSession.Status.ENDED, ended_at=now, last_seen_at=now
    )


def run_create(
    *,
    user_id: int,
    session_id: int | None,
    agent: Agent,
    thread_id: str | None,
    message: str,
    options: dict[str, Any],
    request_id: str,
) -> Run:
    """Create a queued run in the user's thread (a new thread when none is given)."""
    with transaction.atomic():
        if thread_id is None:
            thread = Thread.objects.create(user_id=user_id, title=message[:200])
        else:
            found = Thread.objects.filter(pk=thread_id, user_id=user_id).first()
            if found is None:
                raise NotFound("no such thread")
            thread = found
        return Run.objects.create(
            user_id=user_id,
            session_id=session_id,
            agent=agent,
            thread=thread,
            request_id=request_id,
            message=message,
            options=options,
            process=PROCESS_NAME,
        )


def run_mark_running(*, run_id: str) -> datetime:
    """Mark a queued run as running and return its start time."""
    now = timezone.now()
    Run.objects.filter(pk=run_id).update(status=Run.Status.RUNNING, started_at=now)
    return now


def run_finish(
    *,
    run_id: str,
    status: str,
    result: str = "",
    error_code: str = "",
    error_message: str = "",
) -> None:
    """Record the end of a run; a run already ended keeps its first outcome."""
    Run.objects.filter(pk=run_id).exclude(status__in=Run.TERMINAL).update(
        status=status,
        finished_at=timezone.now(),
        result=result,
        error_code=error_code,
        error_message=error_message[:2000],
    )


@dataclass(frozen=True)
class NewEvent:
    """An event to store: its user, run, type, cleaned data, and any run change it carries."""

    user_id: int
    run_id: str
    event_type: str
    data: dict[str, Any]
    run_change: dict[str, Any] | None = None


# Builds the stored wire frame of events[i] once its seq and timestamp are known.
FrameEncoder = Callable[[int, int, datetime], str]


def events_record(
    events: Sequence[NewEvent], *, encode: FrameEncoder | None = None
) -> list[tuple[int, datetime, str]]:
    """Store events of any users in one transaction, numbered per user in the given order.

    Returns (seq, timestamp, frame) per event. Each user's counter row is
    bumped once by that user's event count (its row lock orders concurrent
    writers across threads and processes; rows are locked in user-id order, so
    two processes writing for the same users cannot deadlock), and the seqs and
    the events commit together: seqs have no holes and never repeat. An event
    that starts or ends a run carries `run_change` (status, and result or error
    for an end), which commits with it, so whoever sees the event finds the run so.
    """
    if not events:
        return []
    with transaction.atomic():
        for event in events:
            if event.run_change is not None:
                if event.run_change["status"] == Run.Status.RUNNING:
                    run_mark_running(run_id=event.run_id)
                else:
                    run_finish(run_id=event.run_id, **event.run_change)
        next_seq = _counters_bump(Counter(event.user_id for event in events))
        created_at = timezone.now()
        rows, stored = [], []
        for index, event in enumerate(events):
            seq = next_seq[event.user_id]
            next_seq[event.user_id] = seq + 1
            frame = encode(index, seq, created_at) if encode is not None else ""
            rows.append((event.user_id, event.run_id, seq, event.event_type, event.data, frame))
            stored.append((seq, created_at, frame))
        _events_insert(rows, created_at)
    return stored


def _counters_bump(counts: dict[int, int]) -> dict[int, int]:
    """Reserve `counts[user]` seqs per user (in the caller's transaction); return each first seq.

    Where the database has SELECT ... FOR UPDATE (PostgreSQL) the counter rows
    are locked in user-id order first, so concurrent batches cannot deadlock;
    SQLite's write transaction already holds the whole database. Then one
    UPDATE ... RETURNING bumps them all.
    """
    ids = sorted(counts)
    table = connection.ops.quote_name(UserEventCounter._meta.db_table)
    marks = ", ".join("%s" for _ in ids)
    cases = " ".join("WHEN %s THEN %s" for _ in ids)
    bumps = [value for user_id in ids for value in (user_id, counts[user_id])]
    with connection.cursor() as cursor:
        if connection.features.has_select_for_update:
            cursor.execute(
                f"SELECT user_id FROM {table} WHERE user_id IN ({marks}) "
                "ORDER BY user_id FOR UPDATE",
                ids,
            )
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + CASE user_id {cases} END "
            f"WHERE user_id IN ({marks}) RETURNING user_id, last_seq",
            [*bumps, *ids],
        )
        last = {int(user_id): int(seq) for user_id, seq in cursor.fetchall()}
    missing = {user_id: counts[user_id] for user_id in ids if user_id not in last}
    if missing:
        # Users whose first event this is: their counter rows are made, then bumped.
        UserEventCounter.objects.bulk_create(
            [UserEventCounter(user_id=user_id) for user_id in missing], ignore_conflicts=True
        )
        return {**{u: last[u] - counts[u] + 1 for u in last}, **_counters_bump(missing)}
    return {user_id: last[user_id] - counts[user_id] + 1 for user_id in ids}


EventRow = tuple[int, str, int, str, dict[str, Any], str]
INSERT_CHUNK = 500


def _events_insert(rows: list[EventRow], at: datetime) -> None:
    """Insert event rows, up to INSERT_CHUNK a statement (the ORM's per-object work is the cost)."""
    meta = RunEvent._meta
    names = ["user", "run", "seq", "type", "payload", "frame", "created_at"]
    fields = [meta.get_field(name) for name in names]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)  # type: ignore[union-attr]
    run_pk, payload = Run._meta.pk, meta.get_field("payload")
    assert run_pk is not None
    created_at = meta.get_field("created_at").get_db_prep_save(at, connection)  # type: ignore[union-attr]
    runs: dict[str, Any] = {}
    params: list[Any] = []
    for user_id, run_id, seq, event_type, data, frame in rows:
        if run_id not in runs:
            runs[run_id] = run_pk.get_db_prep_save(run_pk.to_python(run_id), connection)
        prepared = payload.get_db_prep_save(data, connection)  # type: ignore[union-attr]
        params += (user_id, runs[run_id], seq, event_type, prepared, frame, created_at)
    row_marks = "(" + ", ".join("%s" for _ in fields) + ")"
    insert = f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) VALUES "
    width = len(fields)
    with connection.cursor() as cursor:
        for first in range(0, len(rows), INSERT_CHUNK):
            count = min(INSERT_CHUNK, len(rows) - first)
            cursor.execute(
                insert + ", ".join([row_marks] * count),
                params[first * width : (first + count) * width],
            )


def event_record(
    *,
    user_id: int,
    run_id: str,
    event_type: str,
    data: dict[str, Any],
    run_change: dict[str, Any] | None = None,
) -> tuple[int, datetime]:
    """Store one event with the user's next seq (see events_record); return (seq, timestamp)."""
    event = NewEvent(user_id, run_id, event_type, data, run_change)
    seq, created_at, _ = events_record([event])[0]
    return seq, created_at


def process_beat(*, name: str = PROCESS_NAME) -> None:
    """Record that this process is alive."""
    WorkerProcess.objects.update_or_create(
        name=name,
        defaults={"last_beat_at": timezone.now(), "host": HOST, "pid": os.getpid()},
    )


def process_stop(*, name: str = PROCESS_NAME) -> None:
    """Record that this process stopped looking after runs."""
    WorkerProcess.objects.filter(name=name).update(stopped_at=timezone.now())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def processes_alive(*, stale_after_seconds: float, own: str = PROCESS_NAME) -> set[str]:
    """Return the names of processes still alive: beating, not stopped, pid alive if local."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_seconds)
    alive = {own}
    for proc in WorkerProcess.objects.filter(stopped_at__isnull=True, last_beat_at__gte=cutoff):
        same_host_dead = proc.host == HOST and proc.pid is not None and not _pid_alive(proc.pid)
        if not same_host_dead:
            alive.add(proc.name)
    return alive


def dead_processes_sweep(*, stale_after_seconds: float, own: str = PROCESS_NAME) -> list[Run]:
    """Close the socket records of gone processes; return their runs still marked active.

    A process is gone when it stopped, fell silent for `stale_after_seconds`,
    or is a dead pid on this host.
    """
    alive = processes_alive(stale_after_seconds=stale_after_seconds, own=own)
    connections_close_orphaned(live_processes=alive)
    active = (Run.Status.QUEUED, Run.Status.RUNNING)
    return list(
        Run.objects.filter(status__in=active)
        .exclude(process__in=alive)
        .select_related("agent")
        .order_by("created_at")
    )


def run_claim_interrupted(*, run_id: str, message: str) -> bool:
    """Mark an active run interrupted; True only for the one caller that changed it."""
    return bool(
        Run.objects.filter(pk=run_id, status__in=(Run.Status.QUEUED, Run.Status.RUNNING)).update(
            status=Run.Status.INTERRUPTED,
            finished_at=timezone.now(),
            error_code="interrupted",
            error_message=message,
        )
    )


def run_has_events(*, run_id: str) -> bool:
    """Tell whether any event of the run is stored."""
    return RunEvent.objects.filter(run_id=run_id).exists()


def events_prune(*, older_than: datetime) -> int:
    """Delete events older than `older_than` of runs that have ended; return the count.

    Events of queued or running runs are kept whatever their age, so a client
    can still resume a run that is going on.
    """
    deleted, _ = RunEvent.objects.filter(
        created_at__lt=older_than, run__status__in=Run.TERMINAL
    ).delete()
    return deleted


@dataclass(frozen=True)
class ConnectionRequest:
    """A WebSocket asking to be recorded as open for its user."""

    connection_id: str
    user_id: int
    session_id: int
    auth: str
    max_connections: int


def connections_open(
    requests: Sequence[ConnectionRequest],
) -> dict[ConnectionRequest, int | Exception]:
    """Record many open WebSockets in one transaction, each within its user's limit.

    Each gets its user's last seq, or RateLimited when its user already has
    `max_connections` open (counting those earlier in `requests`). Call it after
    the socket is attached to its user's events: every later seq then reaches it.
    """
    users = sorted({r.user_id for r in requests})
    result: dict[ConnectionRequest, int | Exception] = {}
    with transaction.atomic():
        open_now = dict(
            Connection.objects.filter(user_id__in=users, closed_at__isnull=True)
            .values("user_id")
            .annotate(n=Count("id"))
            .values_list("user_id", "n")
        )
        accepted = []
        for r in requests:
            if open_now.get(r.user_id, 0) >= r.max_connections:
                result[r] = RateLimited(f"at most {r.max_connections} connections per user")
                continue
            open_now[r.user_id] = open_now.get(r.user_id, 0) + 1
            accepted.append(r)
        Connection.objects.bulk_create(
            Connection(
                id=r.connection_id,
                user_id=r.user_id,
                session_id=r.session_id,
                process=PROCESS_NAME,
                auth=r.auth,
            )
            for r in accepted
        )
        AgentSession.objects.filter(pk__in={r.session_id for r in accepted}).update(
            last_seen_at=timezone.now()
        )
        last = dict(
            UserEventCounter.objects.filter(user_id__in=users).values_list("user_id", "last_seq")
        )
    for r in accepted:
        result[r] = int(last.get(r.user_id, 0))
    return result


def connections_close(connection_ids: Sequence[str]) -> dict[str, Exception | None]:
    """Record that many WebSockets closed, in one UPDATE."""
    Connection.objects.filter(pk__in=list(connection_ids), closed_at__isnull=True).update(
        closed_at=timezone.now()
    )
    return dict.fromkeys(connection_ids)


def connections_close_orphaned(*, live_processes: set[str]) -> int:
    """Close the records of sockets whose process is gone; return how many."""
    return (
        Connection.objects.filter(closed_at__isnull=True)
        .exclude(process__in=live_processes)
        .update(closed_at=timezone.now())
    )


def start_token_take(*, user_id: int, rate: float, burst: int) -> float:
    """Take a token from the user's shared start bucket; 0 if taken, else seconds to wait."""
    now = timezone.now()
    with transaction.atomic():
        bucket = StartBucket.objects.select_for_update().filter(user_id=user_id).first()
        if bucket is None:
            bucket, _ = StartBucket.objects.get_or_create(
                user_id=user_id, defaults={"tokens": float(burst), "updated_at": now}
            )
            bucket = StartBucket.objects.select_for_update().get(user_id=user_id)
        elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
        tokens = min(float(burst), bucket.tokens + elapsed * rate)
        if tokens >= 1:
            StartBucket.objects.filter(user_id=user_id).update(tokens=tokens - 1, updated_at=now)
            return 0.0
        StartBucket.objects.filter(user_id=user_id).update(tokens=tokens, updated_at=now)
        return float("inf") if rate <= 0 else (1 - tokens) / rate


def runs_active_count(*, user_id: int, exclude: list[str]) -> int:
    """Count the user's queued or running runs in any process, leaving out `exclude`."""
    return (
        Run.objects.filter(user_id=user_id, status__in=(Run.Status.QUEUED, Run.Status.RUNNING))
        .exclude(pk__in=exclude)
        .count()
    )


def run_active_in_thread(*, user_id: int, thread_id: str, exclude: list[str]) -> Run | None:
    """Return a queued or running run of the user's thread not in `exclude`, if any."""
    return (
        Run.objects.filter(
            user_id=user_id,
            thread_id=thread_id,
            status__in=(Run.Status.QUEUED, Run.Status.RUNNING),
        )
        .exclude(pk__in=exclude)
        .order_by("-created_at")
        .first()
    )


def run_is_active(*, run_id: str) -> bool:
    """Tell whether a run is still queued or running."""
    return Run.objects.filter(
        pk=run_id, status__in=(Run.Status.QUEUED, Run.Status.RUNNING)
    ).exists()


def connections_open_count(*, user_id: int) -> int:
    """Count the user's open sockets in every process."""
    return Connection.objects.filter(user_id=user_id, closed_at__isnull=True).count()


def run_admit(
    *,
    user_id: int,
    thread_id: str | None,
    on_busy: str,
    local_run_ids: list[str],
    local_busy: bool,
    local_leaving: int,
    max_runs: int,
    rate: float,
    burst: int,
    create: dict[str, Any],
) -> tuple[Run, Run | None]:
    """Admit and create a run in one transaction; return it and the other process's run ahead.

    Applies on_busy to a run of the thread going in another process, the
    concurrent-run limit over every process, and the shared start rate, in that
    order, so a refused request consumes no start token.
    """
    with transaction.atomic():
        remote = None
        if thread_id and not local_busy:
            remote = run_active_in_thread(
                user_id=user_id, thread_id=thread_id, exclude=local_run_ids
            )
        if (local_busy or remote is not None) and on_busy == "reject":
            raise ThreadBusy("this thread has a run in progress")
        leaving = [str(remote.pk)] if remote is not None and on_busy == "interrupt" else []
        elsewhere = runs_active_count(user_id=user_id, exclude=local_run_ids + leaving)
        if len(local_run_ids) - local_leaving + elsewhere >= max_runs:
            raise TooManyRuns(f"at most {max_runs} runs at once; stop one or wait")
        retry_after = start_token_take(user_id=user_id, rate=rate, burst=burst)
        if retry_after:
            raise RateLimited("starting runs too fast", retry_after=round(retry_after, 3))
        run = run_create(user_id=user_id, thread_id=thread_id, **create)
        return run, remote
