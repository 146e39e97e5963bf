"""Storing events: numbered per user, inserted in batches, committed with their run change."""

import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, OperationalError, connection, transaction
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
    bumped once by that user's event count, made if it is the user's first
    event (its row lock orders concurrent writers across threads and
    processes; rows are locked in user-id order, so two processes writing for
    the same users cannot deadlock), and the seqs and the events commit
    together: seqs have no holes and never repeat. An event that starts or ends
    a run carries `run_change` (status, and result or error for an end), which
    commits with it, so whoever sees the event finds the run so.
    """
    if not events:
        return []
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _events_record_postgresql(events, encode)
    with transaction.atomic(), _statement_cursor() as cursor:
        return events_record_on(cursor, connection.vendor, events, encode)


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


def events_record_on(
    cursor: Any, vendor: str, events: Sequence[NewEvent], encode: FrameEncoder | None
) -> list[tuple[int, datetime, str]]:
    """Do events_record's work through `cursor`, in the transaction its caller holds.

    The run changes, the seqs and the rows, on any DB-API cursor taking %s
    placeholders: Django's (events_record) or the loop's own SQLite connection
    (agents/events/inline.py).
    """
    counts, statements = _head(events)
    for statement in statements:
        cursor.execute(*statement)
    return events_insert(cursor, vendor, events, _first_seqs(cursor.fetchall(), counts), encode)


def _events_record_postgresql(
    events: Sequence[NewEvent], encode: FrameEncoder | None
) -> list[tuple[int, datetime, str]]:
    """events_record on PostgreSQL outside any transaction: the transaction in two round trips.

    BEGIN, the run changes and the counters go to the server as one message
    (the driver's client-side binding sends several statements as one simple
    query), and the rows with COMMIT as the next (above COPY_ABOVE rows, the
    COPY's two and then COMMIT). Through Django's atomic() and cursor the same
    transaction took five: its BEGIN, its COMMIT, and the SELECT 1 with which
    Django checks the connection's health before a cursor after each
    close_old_connections(), that is before every batch of the writer. That
    check is this transaction's first message here: a connection found broken
    by it has stored nothing, and is opened again and the batch sent once more.
    One lost during the last message may have committed: _committed_after_all
    finds out. Errors come out as Django's; the transaction is rolled back on
    any other failure.
    """
    counts, statements = _head(events)
    text = "; ".join(["BEGIN", *(statement for statement, _ in statements)])
    params = [value for _, values in statements for value in values]
    with connection.wrap_database_errors:
        for attempt in (1, 2):
            connection.ensure_connection()
            driver = connection.connection
            with driver.cursor() as cursor:
                try:
                    cursor.execute(text, params)
                except BaseException as exc:
                    if attempt == 1 and _lost(driver, exc):
                        connection.close()  # dead since its last use: nothing was stored
                        continue
                    _roll_back(driver)
                    raise
                try:
                    while cursor.nextset():  # to the counters' rows, the last result
                        pass
                    next_seq = _first_seqs(cursor.fetchall(), counts)
                    created_at, rows, stored = _numbered(events, next_seq, encode)
                except BaseException:
                    _roll_back(driver)
                    raise
                backend = driver.info.backend_pid
                try:
                    _events_insert(cursor, "postgresql", rows, created_at, commit=True)
                    return stored
                except BaseException as exc:
                    # Lost during the message that ends in COMMIT: committed or not?
                    if _lost(driver, exc):
                        if _committed_after_all(backend, rows[0], created_at):
                            return stored
                    else:
                        _roll_back(driver)
                    raise
    raise AssertionError("unreachable: the second attempt returns or raises")


class OutcomeUnknown(OperationalError):
    """A batch may or may not have committed: storing its events again could store them twice."""


# How long to wait for a lost connection's server process to end before
# deciding whether its last transaction committed.
LOST_BACKEND_WAIT_SECONDS = 10.0


def _committed_after_all(backend: int, first: "EventRow", created_at: datetime) -> bool:
    """Whether the batch of a connection lost during its COMMIT was committed; else False.

    Its server process is stopped and waited for (its transaction then has
    committed or never will), on a new connection; then the batch's first row
    is looked for, whole: another writer may have taken its seq meanwhile if it
    did not commit. Raises OutcomeUnknown if the process does not end in time
    or the check cannot be made: telling the events failed could then store
    them twice.
    """
    try:
        return _found_after_all(backend, first, created_at)
    except OutcomeUnknown:
        raise
    except DatabaseError as exc:
        raise OutcomeUnknown(
            f"a batch's connection was lost during COMMIT and whether it committed "
            f"could not be checked: {exc}"
        ) from exc


def _found_after_all(backend: int, first: "EventRow", created_at: datetime) -> bool:
    """_committed_after_all's check, on a new connection."""
    connection.close()
    user_id, run_id, seq, event_type, _, frame = first
    deadline = time.monotonic() + LOST_BACKEND_WAIT_SECONDS
    with connection.cursor() as cursor:
        # Not allowed to stop it? It ends by itself once it sees its client gone.
        with contextlib.suppress(DatabaseError):
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
        while True:
            cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend])
            if not cursor.fetchall():
                break
            if time.monotonic() > deadline:
                raise OutcomeUnknown(
                    f"a batch's connection was lost during COMMIT and its server process "
                    f"{backend} has not ended: whether the batch committed is unknown"
                )
            time.sleep(0.01)
        columns = ("user", "seq", "run", "type", "frame", "created_at")
        where = " AND ".join(f"{sql.column(RunEvent, name)} = %s" for name in columns)
        cursor.execute(
            f"SELECT 1 FROM {sql.table(RunEvent)} WHERE {where}",
            [
                user_id,
                seq,
                _run_value("postgresql", run_id),
                event_type,
                frame,
                sql.prep(RunEvent, "created_at", created_at),
            ],
        )
        return bool(cursor.fetchall())


def _lost(driver: Any, exc: BaseException) -> bool:
    """Whether exc came from the connection being lost while a message was out.

    The driver marks such a connection broken when it reads the server's
    goodbye or the end of the socket; when the socket reports an error first
    (the server process gone and its kernel resetting the connection), it
    raises "connection socket closed" and leaves the connection looking
    healthy with the message's reply still awaited (libpq's ACTIVE): the
    server may have run it all the same.
    """
    from psycopg.pq import TransactionStatus

    if not isinstance(exc, Exception):
        return False
    if driver.broken:
        return True
    return not driver.closed and driver.info.transaction_status == TransactionStatus.ACTIVE


def _roll_back(driver: Any) -> None:
    """End a failed transaction of _events_record_postgresql (or close a connection that cannot)."""
    from psycopg.pq import TransactionStatus

    if driver.closed or driver.info.transaction_status == TransactionStatus.IDLE:
        return
    try:
        driver.execute("ROLLBACK")
    except Exception:
        connection.close()


def _head(events: Sequence[NewEvent]) -> tuple[Counter[int], list[tuple[str, list[Any]]]]:
    """Each user's event count, and the statements before the rows: run changes, counters."""
    counts = Counter(event.user_id for event in events)
    return counts, [*_run_changes(events), _counters_statement(counts)]


def _run_changes(events: Sequence[NewEvent]) -> list[tuple[str, list[Any]]]:
    """The UPDATEs of the run changes the events carry, in their order."""
    return [
        run_change_statement(run_id=event.run_id, change=event.run_change)
        for event in events
        if event.run_change is not None
    ]


def _counters_statement(counts: dict[int, int]) -> tuple[str, list[Any]]:
    """Reserve `counts[user]` seqs per user: one upsert of the counter rows, returning the last.

    A user's first event makes the row (the ON CONFLICT clause bumps an
    existing one). PostgreSQL locks each existing row as it reaches it, in the
    order of the VALUES, which are in user-id order: concurrent batches lock
    in the same order and cannot deadlock. SQLite's write transaction already
    holds the whole database.
    """
    ids = sorted(counts)
    table = sql.table(UserEventCounter)
    user = sql.column(UserEventCounter, "user")
    last = sql.column(UserEventCounter, "last_seq")
    values = ", ".join("(%s, %s)" for _ in ids)
    return (
        f"INSERT INTO {table} ({user}, {last}) VALUES {values} "
        f"ON CONFLICT ({user}) DO UPDATE SET {last} = {table}.{last} + excluded.{last} "
        f"RETURNING {user}, {last}",
        [value for user_id in ids for value in (user_id, counts[user_id])],
    )


def _first_seqs(returned: list[tuple[Any, Any]], counts: dict[int, int]) -> dict[int, int]:
    """Each user's first reserved seq, from the counters' (user id, last seq) rows."""
    last = {int(user_id): int(seq) for user_id, seq in returned}
    return {user_id: last[user_id] - count + 1 for user_id, count in counts.items()}


def events_insert(
    cursor: Any,
    vendor: str,
    events: Sequence[NewEvent],
    next_seq: dict[int, int],
    encode: FrameEncoder | None,
) -> list[tuple[int, datetime, str]]:
    """Number the events from `next_seq` (per user, in order) and insert them; see events_record."""
    created_at, rows, stored = _numbered(events, next_seq, encode)
    _events_insert(cursor, vendor, rows, created_at, commit=False)
    return stored


def _numbered(
    events: Sequence[NewEvent], next_seq: dict[int, int], encode: FrameEncoder | None
) -> tuple[datetime, list["EventRow"], list[tuple[int, datetime, str]]]:
    """Number the events from `next_seq` (per user, in order): their time, rows and results."""
    created_at = timezone.now()
    rows, stored = [], []
    for index, event in enumerate(events):
        seq = next_seq[event.user_id]
        next_seq[event.user_id] = seq + 1
        data_text = encode_data(event.data)
        frame = encode(index, seq, created_at, data_text) if encode is not None else ""
        rows.append((event.user_id, event.run_id, seq, event.event_type, data_text, frame))
        stored.append((seq, created_at, frame))
    return created_at, rows, stored


# (user id, run id, seq, type, data as JSON text, frame)
EventRow = tuple[int, str, int, str, str, str]


INSERT_CHUNK = 500
EVENT_COLUMNS = ("user", "run", "seq", "type", "payload", "frame", "created_at")
# On PostgreSQL, batches of more rows than this go in by COPY: the driver's
# client-side binding of a written-out INSERT cost 17-22 µs of the writer
# thread's CPU a row, COPY's rows 3-8 µs; at a few rows, where COPY's extra
# round trip costs as much as it saves, the INSERT stays (bench/RESULTS.md).
COPY_ABOVE = 8


def _events_insert(
    cursor: Any, vendor: str, rows: list[EventRow], at: datetime, commit: bool
) -> None:
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
        if commit:
            cursor.execute("COMMIT")
        return
    insert, row_marks = _insert_text(vendor)
    for first in range(0, len(rows), INSERT_CHUNK):
        count = min(INSERT_CHUNK, len(rows) - first)
        last = first + count == len(rows)
        cursor.execute(
            insert + ", ".join([row_marks] * count) + ("; COMMIT" if commit and last else ""),
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
