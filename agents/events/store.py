"""Storing events: numbered per user, inserted in batches, committed with their run change."""

import contextlib
import functools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from agents import sql
from agents.events.frames import encode_data
from agents.models import Run, RunEvent, UserEventCounter
from agents.services.runs import run_change_statement


@dataclass(frozen=True)
class NewEvent:
    """An event to store: its user, run, type, cleaned data, and any run change it carries."""

    user_id: int
    run_id: str
    event_type: str
    data: dict[str, Any]
    run_change: dict[str, Any] | None = None


# Builds the stored wire frame of events[i] once its seq and timestamp are known,
# given its data already encoded (encode_data).
FrameEncoder = Callable[[int, int, datetime, str], str]


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
    with transaction.atomic(), _statement_cursor() as cursor:
        return events_record_on(
            cursor,
            connection.vendor,
            events,
            encode,
            lock=connection.features.has_select_for_update,
            make_counters=_counters_make,
        )


@contextlib.contextmanager
def _statement_cursor() -> Iterator[Any]:
    """A cursor of the default connection, in its transaction, for events_record_on.

    On SQLite the driver's own cursor under sql.QmarkCursor, which rewrites a
    statement's placeholders once, not at every execute as Django's does; on
    other databases Django's cursor (PostgreSQL's takes %s as it is, and its
    driver cursor does the COPY of _events_copy). Either way the driver's
    errors come out as Django's, as from Django's own execute (and mark the
    connection for Django's health check the same way).
    """
    with connection.wrap_database_errors:
        if connection.vendor != "sqlite":
            with connection.cursor() as django_cursor:
                yield django_cursor
            return
        connection.ensure_connection()
        cursor = sql.QmarkCursor(connection.connection.cursor())
        try:
            yield cursor
        finally:
            cursor.close()


class CountersMissing(Exception):
    """Users without a counter row yet, and no way given to make them."""


def events_record_on(
    cursor: Any,
    vendor: str,
    events: Sequence[NewEvent],
    encode: FrameEncoder | None,
    *,
    lock: bool,
    make_counters: Callable[[list[int]], None] | None = None,
) -> list[tuple[int, datetime, str]]:
    """Do events_record's work through `cursor`, in the transaction its caller holds.

    The run changes, the seqs and the rows, on any DB-API cursor taking %s
    placeholders: Django's (events_record) or the loop's own SQLite connection
    (agents/events/inline.py). Users whose first event this is get their counter
    rows from `make_counters`; without it, CountersMissing is raised.
    """
    for event in events:
        if event.run_change is not None:
            cursor.execute(*run_change_statement(run_id=event.run_id, change=event.run_change))
    counts = Counter(event.user_id for event in events)
    next_seq, missing = counters_bump(cursor, counts, lock=lock)
    if missing:
        if make_counters is None:
            raise CountersMissing(missing)
        make_counters(missing)
        more, _ = counters_bump(cursor, {u: counts[u] for u in missing}, lock=lock)
        next_seq.update(more)
    return events_insert(cursor, vendor, events, next_seq, encode)


def _counters_make(user_ids: list[int]) -> None:
    """Make the counter rows of users whose first event this is (Django's connection)."""
    UserEventCounter.objects.bulk_create(
        [UserEventCounter(user_id=user_id) for user_id in user_ids], ignore_conflicts=True
    )


def counters_bump(
    cursor: Any, counts: dict[int, int], *, lock: bool
) -> tuple[dict[int, int], list[int]]:
    """Reserve `counts[user]` seqs per user in the cursor's transaction; return first seqs, missing.

    One UPDATE ... RETURNING bumps them all. With `lock` (PostgreSQL) it
    first locks the rows in user-id order, in the same statement (SELECT ...
    ORDER BY ... FOR UPDATE in a WITH clause, whose rows the UPDATE joins: no
    row is updated before that clause has locked it), so concurrent batches
    cannot deadlock, and the lock costs no round trip of its own. SQLite's
    write transaction already holds the whole database. Users without a
    counter row yet are returned as missing, unbumped.
    """
    ids = sorted(counts)
    table = sql.table(UserEventCounter)
    marks = sql.marks(ids)
    cases = " ".join("WHEN %s THEN %s" for _ in ids)
    bumps = [value for user_id in ids for value in (user_id, counts[user_id])]
    if lock:
        cursor.execute(
            f"WITH locked AS (SELECT user_id FROM {table} WHERE user_id IN ({marks}) "
            "ORDER BY user_id FOR UPDATE) "
            f"UPDATE {table} AS counter SET last_seq = counter.last_seq "
            f"+ CASE counter.user_id {cases} END FROM locked "
            "WHERE counter.user_id = locked.user_id RETURNING counter.user_id, counter.last_seq",
            [*ids, *bumps],
        )
    else:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + CASE user_id {cases} END "
            f"WHERE user_id IN ({marks}) RETURNING user_id, last_seq",
            [*bumps, *ids],
        )
    last = {int(user_id): int(seq) for user_id, seq in cursor.fetchall()}
    first = {user_id: last[user_id] - counts[user_id] + 1 for user_id in last}
    return first, [user_id for user_id in ids if user_id not in last]


def events_insert(
    cursor: Any,
    vendor: str,
    events: Sequence[NewEvent],
    next_seq: dict[int, int],
    encode: FrameEncoder | None,
) -> list[tuple[int, datetime, str]]:
    """Number the events from `next_seq` (per user, in order) and insert them; see events_record."""
    created_at = timezone.now()
    rows, stored = [], []
    for index, event in enumerate(events):
        seq = next_seq[event.user_id]
        next_seq[event.user_id] = seq + 1
        data_text = encode_data(event.data)
        frame = encode(index, seq, created_at, data_text) if encode is not None else ""
        rows.append((event.user_id, event.run_id, seq, event.event_type, data_text, frame))
        stored.append((seq, created_at, frame))
    _events_insert(cursor, vendor, rows, created_at)
    return stored


# (user id, run id, seq, type, data as JSON text, frame)
EventRow = tuple[int, str, int, str, str, str]


INSERT_CHUNK = 500
EVENT_COLUMNS = ("user", "run", "seq", "type", "payload", "frame", "created_at")
# On PostgreSQL, batches of more rows than this go in by COPY: the driver's
# client-side binding of a written-out INSERT cost 17-22 µs of the writer
# thread's CPU a row, COPY's rows 3-8 µs; at a few rows, where COPY's extra
# round trip costs as much as it saves, the INSERT stays (bench/RESULTS.md).
COPY_ABOVE = 8


def _events_insert(cursor: Any, vendor: str, rows: list[EventRow], at: datetime) -> None:
    """Insert event rows, up to INSERT_CHUNK a statement, written out (agents/sql.py).

    The payload goes in as the JSON text already made for the frame (encode_data),
    cast to jsonb on PostgreSQL, instead of being encoded again by the JSONField.
    """
    created_at = sql.prep(RunEvent, "created_at", at)
    params: list[Any] = []
    for user_id, run_id, seq, event_type, data_text, frame in rows:
        run = _run_value(vendor, run_id)
        params += (user_id, run, seq, event_type, data_text, frame, created_at)
    width = len(EVENT_COLUMNS)
    if vendor == "postgresql" and len(rows) > COPY_ABOVE:
        _events_copy(cursor, [params[i : i + width] for i in range(0, len(params), width)])
        return
    insert, row_marks = _insert_text(vendor)
    for first in range(0, len(rows), INSERT_CHUNK):
        count = min(INSERT_CHUNK, len(rows) - first)
        cursor.execute(
            insert + ", ".join([row_marks] * count),
            params[first * width : (first + count) * width],
        )


def _events_copy(cursor: Any, rows: list[list[Any]]) -> None:
    """Insert event rows with PostgreSQL's COPY, through Django's cursor's driver cursor."""
    with cursor.copy(_copy_text()) as copy:
        for row in rows:
            copy.write_row(row)


@functools.cache
def _copy_text() -> str:
    """The COPY statement of the event rows (once)."""
    columns = ", ".join(sql.column(RunEvent, name) for name in EVENT_COLUMNS)
    return f"COPY {sql.table(RunEvent)} ({columns}) FROM STDIN"


@functools.cache
def _insert_text(vendor: str) -> tuple[str, str]:
    """The event insert's text up to VALUES, and one row's placeholders (once per vendor)."""
    columns = ", ".join(sql.column(RunEvent, name) for name in EVENT_COLUMNS)
    json_mark = "%s::jsonb" if vendor == "postgresql" else "%s"
    marks = [json_mark if name == "payload" else "%s" for name in EVENT_COLUMNS]
    return f"INSERT INTO {sql.table(RunEvent)} ({columns}) VALUES ", "(" + ", ".join(marks) + ")"


@functools.lru_cache(maxsize=4096)
def _run_value(vendor: str, run_id: str) -> Any:
    """A run id as the events' run column takes it (a run writes many events: kept)."""
    return sql.prep(RunEvent, "run", run_id)


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


def events_prune(*, older_than: datetime) -> int:
    """Delete events older than `older_than` of runs that have ended; return the count.

    Events of queued or running runs are kept whatever their age, so a client
    can still resume a run that is going on.
    """
    deleted, _ = RunEvent.objects.filter(
        created_at__lt=older_than, run__status__in=Run.TERMINAL
    ).delete()
    return deleted
