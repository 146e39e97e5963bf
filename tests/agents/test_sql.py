"""The written-out statements (agents/sql.py) read and write exactly what the ORM would."""

import contextlib
import datetime
import sqlite3
import time
import uuid

import pytest
from django.db import connection, transaction
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX
from django.db.models import Model

from agents import sql
from agents.errors import NotFound, UnknownAgent
from agents.events.frames import encode_data
from agents.events.store import COPY_ABOVE, NewEvent, _insert_text, events_record
from agents.models import Agent, Run, RunEvent, Thread, UserEventCounter
from agents.selectors import agent_get_enabled, run_active_in_thread, runs_active_count
from agents.services.runs import RunDraft, run_create
from tests.rows import full_run

pytestmark = pytest.mark.django_db(transaction=True)


def columns_of(obj: Model) -> dict[str, object]:
    """Every column's value as the instance holds it."""
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_select_reads_every_column_as_the_orm_does(make_user):
    run = full_run(make_user())
    where = f"{sql.column(Run, 'id')} = %s"
    [read] = sql.select(Run, where, [sql.prep(Run, "id", run.pk)])
    assert columns_of(read) == columns_of(Run.objects.get(pk=run.pk))
    assert isinstance(read.pk, uuid.UUID) and read.started_at.tzinfo is not None
    assert not read._state.adding and read._state.db == "default"
    agent = Agent.objects.get(name="triage")
    [agent_read] = sql.select(Agent, f"{sql.column(Agent, 'name')} = %s", ["triage"])
    assert columns_of(agent_read) == columns_of(agent)
    assert isinstance(agent_read.allowed_tools, list) and agent_read.enabled is True


def test_select_filters_orders_and_limits(make_user):
    user = make_user()
    runs = [full_run(user, message=f"m{i}") for i in range(3)]
    where = f"{sql.column(Run, 'user')} = %s"
    order = f"{sql.column(Run, 'message')} DESC"
    assert [r.message for r in sql.select(Run, where, [user.pk], order=order, limit=2)] == [
        "m2",
        "m1",
    ]
    assert sql.select(Run, where, [user.pk + 1000]) == []
    assert {r.pk for r in sql.select(Run, where, [user.pk])} == {r.pk for r in runs}


def test_insert_writes_the_row_save_would(make_user):
    user = make_user()
    original = full_run(user)
    copy = Run(**{**columns_of(original), "id": uuid.uuid4(), "created_at": None})
    sql.insert(copy)
    assert copy.created_at is not None  # auto_now_add, as save() sets it
    assert not copy._state.adding
    stored = Run.objects.get(pk=copy.pk)
    assert columns_of(stored) == columns_of(copy)
    same_but_keys = {k: v for k, v in columns_of(stored).items() if k not in {"id", "created_at"}}
    assert same_but_keys == {
        k: v for k, v in columns_of(original).items() if k not in {"id", "created_at"}
    }


def test_the_admission_reads_agree_with_the_orm(make_user):
    user, other = make_user(), make_user()
    queued = full_run(user, status=Run.Status.QUEUED)
    running = full_run(user, thread=queued.thread)
    full_run(user, status=Run.Status.COMPLETED, thread=queued.thread)
    full_run(user, status=Run.Status.WAITING_INPUT)
    full_run(other)
    active = Run.objects.filter(user=user, status__in=Run.ACTIVE)
    assert runs_active_count(user_id=user.pk, exclude=[]) == active.count() == 3
    leaving = [str(queued.pk), str(uuid.uuid4())]
    assert runs_active_count(user_id=user.pk, exclude=leaving) == 2
    thread = str(queued.thread_id)
    newest = run_active_in_thread(user_id=user.pk, thread_id=thread, exclude=[])
    assert newest is not None and newest.pk == running.pk  # the latest of the thread
    assert run_active_in_thread(user_id=user.pk, thread_id=thread, exclude=[str(running.pk)]) == (
        queued
    )
    assert run_active_in_thread(user_id=other.pk, thread_id=thread, exclude=[]) is None


def test_a_disabled_or_missing_agent_is_not_found(make_user):
    assert agent_get_enabled(name="triage").name == "triage"
    Agent.objects.filter(name="triage").update(enabled=False)
    with pytest.raises(UnknownAgent):
        agent_get_enabled(name="triage")
    with pytest.raises(UnknownAgent):
        agent_get_enabled(name="no-such-agent")


def test_run_create_in_a_thread_of_the_user_only(make_user):
    user, other = make_user(), make_user()
    agent = Agent.objects.get(name="triage")

    def draft(owner, thread_id):
        return RunDraft(
            user_id=owner.pk,
            session_id=None,
            agent=agent,
            thread_id=thread_id,
            message="hello",
            options={"k": "v"},
            request_id="q",
        )

    first = run_create(draft(user, None))
    assert Thread.objects.get(pk=first.thread_id).title == "hello"
    second = run_create(draft(user, str(first.thread_id)))
    assert second.thread_id == first.thread_id
    assert columns_of(Run.objects.get(pk=second.pk)) == columns_of(second)
    with pytest.raises(NotFound):
        run_create(draft(other, str(first.thread_id)))
    with pytest.raises(NotFound):
        run_create(draft(user, str(uuid.uuid4())))


def test_the_replay_reads_agree_with_the_orm(make_user):
    from agents.events.reads import (
        PAGES_PER_QUERY,
        USERS_PER_QUERY,
        frames_after,
        frames_after_many,
        user_last_seq,
        users_last_seq,
    )
    from agents.events.store import NewEvent, events_record
    from agents.models import RunEvent, UserEventCounter

    user, other, never = make_user(), make_user(), make_user()
    mine, theirs = full_run(user), full_run(other)
    events_record(
        [
            NewEvent(user.pk, str(mine.pk), "agent_thinking", {"text": f"«{i}» \u2028"})
            for i in range(7)
        ]
        + [NewEvent(other.pk, str(theirs.pk), "agent_thinking", {"text": "x"}) for _ in range(3)]
    )
    RunEvent.objects.filter(user=user, seq=4).delete()  # a pruned hole
    for seq, limit, through in [(0, 500, None), (2, 2, None), (1, 500, 6), (7, 500, None)]:
        orm = RunEvent.objects.filter(user=user, seq__gt=seq).order_by("seq")
        if through is not None:
            orm = orm.filter(seq__lte=through)
        expected = list(orm.values_list("seq", "frame")[:limit])
        assert frames_after(user_id=user.pk, seq=seq, limit=limit, through_seq=through) == expected
    assert [s for s, _ in frames_after(user_id=user.pk, seq=0)] == [1, 2, 3, 5, 6, 7]
    for someone in (user, other, never):
        counter = UserEventCounter.objects.filter(user=someone).first()
        assert user_last_seq(user_id=someone.pk) == (counter.last_seq if counter else 0)
    assert user_last_seq(user_id=never.pk) == 0 and user_last_seq(user_id=user.pk) == 7
    # several pages and users at once, as a crowd's resumes read them
    ids = [user.pk, other.pk, never.pk]
    assert users_last_seq(ids) == {u: user_last_seq(user_id=u) for u in ids}
    assert users_last_seq([]) == {}
    many = list(range(10**6, 10**6 + USERS_PER_QUERY)) + ids  # more than one query reads
    assert users_last_seq(many) == {u: user_last_seq(user_id=u) for u in many}
    keys = [
        (someone, seq, limit, through)
        for someone in ids
        for seq, limit, through in [(0, 500, None), (2, 2, None), (1, 500, 6), (7, 500, None)]
    ]
    keys = keys * 10  # more pages than one query reads (PAGES_PER_QUERY)
    assert len(keys) > PAGES_PER_QUERY
    expected = [frames_after(user_id=u, seq=q, limit=n, through_seq=t) for u, q, n, t in keys]
    assert frames_after_many(keys) == expected
    assert frames_after_many([]) == []


def test_the_qmark_cursor_takes_our_placeholders_as_djangos_sqlite_cursor_does():
    db = sqlite3.connect(":memory:")
    cursor = sql.QmarkCursor(db.cursor())
    cursor.execute("SELECT %s, '100%%', '%%s', %s || 'x'", [1, "a"])
    assert cursor.fetchall() == [(1, "100%", "%s", "ax")]
    cursor.close()
    db.close()


def test_the_qmark_cursor_rewrites_our_statements_as_djangos_sqlite_cursor_does():
    insert, row_marks = _insert_text("sqlite")
    for text in (
        insert + ", ".join([row_marks] * 500),
        "UPDATE t SET n = n + CASE id WHEN %s THEN %s END WHERE id IN (%s, %s) RETURNING id",
        "SELECT %s, '100%%', '%%s' FROM t WHERE a LIKE 'x%%' AND b = %s",
    ):
        assert sql._qmarks(text) == FORMAT_QMARK_REGEX.sub("?", text).replace("%%", "%")


AWKWARD = {
    "text": 'tab\there, newline\nthere, back\\slash, "quotes", \u2028 é 🙂',
    "nested": {"list": [1, 2.5, None, True, "\\N"], "empty": {}},
}


def awkward_frame(index: int, seq: int, at: datetime.datetime, data_text: str) -> str:
    """A stored frame holding what COPY's text format must escape."""
    return f'{{"seq":{seq},"i":{index},"data":{data_text}}}\t\\N\n\\.\r'


@pytest.mark.parametrize("in_atomic", [False, True], ids=["alone", "in_atomic"])
@pytest.mark.parametrize("count", [1, COPY_ABOVE, COPY_ABOVE + 1, 40])
def test_a_batch_is_stored_as_given_however_many_rows_it_has(make_user, count, in_atomic):
    # On PostgreSQL batches over COPY_ABOVE rows go in by COPY, smaller ones by INSERT;
    # alone, the transaction is our own BEGIN ... COMMIT, inside atomic() Django's.
    user, other = make_user(), make_user()
    mine, theirs = full_run(user), full_run(other)
    events = [
        NewEvent(
            *((user.pk, str(mine.pk)) if i % 3 else (other.pk, str(theirs.pk))),
            "agent_thinking",
            {**AWKWARD, "i": i},
        )
        for i in range(count)
    ]
    with transaction.atomic() if in_atomic else contextlib.nullcontext():
        returned = events_record(events, encode=awkward_frame)
    stored = {
        (row.user_id, row.seq): row for row in RunEvent.objects.filter(user__in=[user, other])
    }
    assert len(stored) == count
    for index, (event, (seq, at, frame)) in enumerate(zip(events, returned, strict=True)):
        row = stored[(event.user_id, seq)]
        assert (str(row.run_id), row.type, row.payload) == (
            event.run_id,
            event.event_type,
            event.data,
        )
        assert row.frame == frame == awkward_frame(index, seq, at, encode_data(event.data))
        assert row.created_at == at
    for someone in (user, other):
        seqs = sorted(seq for user_id, seq in stored if user_id == someone.pk)
        assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's COPY only")
def test_a_row_copy_refuses_fails_its_whole_batch_with_djangos_error(make_user):
    from django.db import DataError

    user, run = one_event_stored(make_user)
    too_long = "x" * 33  # the type column holds 32
    batch = [
        NewEvent(user.pk, str(run.pk), too_long if i == 5 else "agent_thinking", {"i": i})
        for i in range(COPY_ABOVE + 1)
    ]
    with pytest.raises(DataError):
        events_record(batch)
    assert RunEvent.objects.filter(user=user).count() == 1
    assert UserEventCounter.objects.get(user=user).last_seq == 1
    # and the connection goes on storing
    assert [seq for seq, _, _ in events_record(batch[:5] + batch[6:])] == list(range(2, 10))


@pytest.mark.parametrize("count", [1, COPY_ABOVE + 1])
def test_a_statement_error_comes_out_as_djangos_and_keeps_nothing(make_user, count):
    # Events are stored through the driver's cursor (SQLite's, and PostgreSQL's
    # COPY): its errors must still be Django's, whatever the path.
    from django.db import IntegrityError

    user, run = one_event_stored(make_user)
    batch = [NewEvent(user.pk, str(run.pk), "agent_thinking", {}) for _ in range(count)]
    batch[-1] = NewEvent(user.pk, str(run.pk), None, {})  # type: ignore[arg-type]  # NOT NULL
    with pytest.raises(IntegrityError):
        events_record(batch)
    assert RunEvent.objects.filter(user=user).count() == 1
    assert UserEventCounter.objects.get(user=user).last_seq == 1


@pytest.mark.parametrize("in_atomic", [False, True], ids=["alone", "in_atomic"])
def test_a_user_s_first_event_makes_its_counter_with_the_batch(make_user, in_atomic):
    user, other = make_user(), make_user()
    run = full_run(user)
    assert not UserEventCounter.objects.filter(user__in=[user, other]).exists()
    events = [NewEvent(u.pk, str(run.pk), "agent_thinking", {}) for u in (other, user, other)]
    with transaction.atomic() if in_atomic else contextlib.nullcontext():
        returned = events_record(events)
    assert [seq for seq, _, _ in returned] == [1, 1, 2]
    counters = dict(UserEventCounter.objects.values_list("user_id", "last_seq"))
    assert (counters[user.pk], counters[other.pk]) == (1, 2)


def test_a_failure_at_commit_keeps_nothing_and_the_connection_goes_on(make_user):
    # The events' run is a deferred foreign key on PostgreSQL: checked at COMMIT,
    # which goes in one message with the rows; on SQLite at the INSERT.
    from django.db import IntegrityError

    user, run = one_event_stored(make_user)
    for count in (2, COPY_ABOVE + 1):
        batch = [NewEvent(user.pk, str(run.pk), "agent_thinking", {}) for _ in range(count)]
        batch[-1] = NewEvent(user.pk, str(uuid.uuid4()), "agent_thinking", {})  # no such run
        with pytest.raises(IntegrityError):
            events_record(batch)
        assert RunEvent.objects.filter(user=user).count() == 1
        assert UserEventCounter.objects.get(user=user).last_seq == 1
        assert not connection.in_atomic_block and connection.get_autocommit()
    assert [seq for seq, _, _ in events_record(batch[:-1])] == list(range(2, COPY_ABOVE + 2))


postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")


def one_event_stored(make_user):
    """A new user with a run and its first event stored (seq 1)."""
    user = make_user()
    run = full_run(user)
    events_record([NewEvent(user.pk, str(run.pk), "agent_thinking", {})])
    return user, run


def kill(backend_pid):
    import psycopg

    from tests.services import POSTGRES_URL

    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])


def messages_to_server(action):
    """Run `action`; return the Query messages the connection sent meanwhile (libpq's trace)."""
    import tempfile

    from psycopg import pq

    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            action()
        finally:
            pgconn.untrace()
        trace.seek(0)
        lines = [line.split("\t") for line in trace.read().splitlines()]
    return [
        line[3].strip().strip('"') for line in lines if line[:1] == ["F"] and line[2] == "Query"
    ]


@postgres_only
def test_a_batch_alone_is_two_messages_to_postgresql(make_user):
    from django.db import close_old_connections

    user = make_user()
    run = full_run(user)
    for count, expected in [
        (3, ["BEGIN; ", "INSERT"]),
        (COPY_ABOVE + 1, ["BEGIN; ", "COPY", "COMMIT"]),
    ]:
        batch = [NewEvent(user.pk, str(run.pk), "agent_thinking", {}) for _ in range(count)]
        close_old_connections()  # as the writer does before each batch: no SELECT 1 follows
        sent = messages_to_server(lambda batch=batch: events_record(batch))
        assert [m[: len(e)] for m, e in zip(sent, expected, strict=True)] == expected
        assert sent[0].count(";") == 1  # BEGIN with the counters
        assert sent[-1].endswith("COMMIT")


@postgres_only
def test_a_connection_killed_between_batches_is_opened_again_and_stores_once(make_user):

    user, run = one_event_stored(make_user)
    for count in (1, COPY_ABOVE + 1):
        first = UserEventCounter.objects.get(user=user).last_seq + 1
        connection.ensure_connection()
        killed = connection.connection.info.backend_pid
        kill(killed)
        batch = [NewEvent(user.pk, str(run.pk), "agent_thinking", {}) for _ in range(count)]
        assert [seq for seq, _, _ in events_record(batch)] == list(range(first, first + count))
        assert connection.connection.info.backend_pid != killed
    seqs = list(RunEvent.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 1 + 1 + (COPY_ABOVE + 1) + 1))  # each once


@postgres_only
def test_a_connection_that_cannot_be_opened_again_fails_the_batch_with_djangos_error(
    make_user, monkeypatch
):
    from django.db import OperationalError

    user, run = one_event_stored(make_user)
    connection.ensure_connection()
    kill(connection.connection.info.backend_pid)
    # the new connection dies as well, before its first statement
    reconnect = connection.connect

    def connect_and_die():
        reconnect()
        kill(connection.connection.info.backend_pid)

    monkeypatch.setattr(connection, "connect", connect_and_die)
    with pytest.raises(OperationalError):
        events_record([NewEvent(user.pk, str(run.pk), "agent_thinking", {})])
    monkeypatch.undo()
    connection.close()
    assert RunEvent.objects.filter(user=user).count() == 1
    assert UserEventCounter.objects.get(user=user).last_seq == 1


@postgres_only
def test_a_connection_whose_socket_fails_at_the_first_message_is_opened_again(
    make_user, monkeypatch
):
    # The socket reports an error before the server's goodbye is read: the
    # driver does not mark the connection broken, yet nothing was committed.
    import psycopg

    user, run = one_event_stored(make_user)
    connection.ensure_connection()
    lost = connection.connection
    cursor_class = type(lost.cursor())
    real_execute = cursor_class.execute

    def socket_fails_once(cursor, *args, **kwargs):
        if cursor.connection is lost:
            kill(lost.info.backend_pid)
            lost.pgconn.send_query(b"SELECT 1")
            raise psycopg.OperationalError("connection socket closed")
        return real_execute(cursor, *args, **kwargs)

    monkeypatch.setattr(cursor_class, "execute", socket_fails_once)
    batch = [NewEvent(user.pk, str(run.pk), "agent_thinking", {}) for _ in range(2)]
    assert [seq for seq, _, _ in events_record(batch)] == [2, 3]
    assert connection.connection is not lost
    monkeypatch.undo()
    seqs = list(RunEvent.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))
    assert seqs == [1, 2, 3]


def lost_at_commit(monkeypatch, before=None, after=None, socket_error=False):
    """Make the next batch's last message be lost: `before` it is sent, or once it committed
    (then `after` runs, before the driver finds the connection gone).

    With socket_error the driver finds it gone as when the socket reports an
    error before the server's goodbye is read: psycopg raises "connection
    socket closed" with the reply still awaited and the connection not marked
    broken.
    """
    import psycopg

    from agents.events import store

    real = store._events_insert

    def insert_then_lose(cursor, vendor, rows, at, commit):
        backend = connection.connection.info.backend_pid
        if before is not None:
            kill(backend)
            before(rows)
            return real(cursor, vendor, rows, at, commit)  # fails: the connection is gone
        real(cursor, vendor, rows, at, commit)
        kill(backend)  # committed, and the reply never comes
        if after is not None:
            after()
        if socket_error:
            connection.connection.pgconn.send_query(b"SELECT 1")
            raise psycopg.OperationalError("connection socket closed")
        cursor.execute("SELECT 1")

    monkeypatch.setattr(store, "_events_insert", insert_then_lose)


@postgres_only
@pytest.mark.parametrize("socket_error", [False, True], ids=["goodbye read", "socket error"])
@pytest.mark.parametrize("count", [2, COPY_ABOVE + 1])
def test_a_batch_committed_as_its_connection_was_lost_is_stored_once(
    make_user, monkeypatch, count, socket_error
):
    user, run = one_event_stored(make_user)
    lost_at_commit(monkeypatch, socket_error=socket_error)
    batch = [NewEvent(user.pk, str(run.pk), "agent_thinking", {"i": i}) for i in range(count)]
    assert [seq for seq, _, _ in events_record(batch)] == list(range(2, count + 2))
    monkeypatch.undo()
    assert [seq for seq, _, _ in events_record(batch[:1])] == [count + 2]
    seqs = list(RunEvent.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, count + 3))


@postgres_only
def test_a_lost_batch_that_cannot_be_checked_is_outcome_unknown(make_user, monkeypatch):
    # Committed, the connection lost, and no new connection to check with: the
    # outcome is unknown, which the writer does not retry event by event.
    import psycopg

    from agents.events.store import OutcomeUnknown

    user, run = one_event_stored(make_user)

    def refuse():
        raise psycopg.OperationalError("the server is unreachable")

    def unreachable():
        monkeypatch.setattr(connection, "connect", refuse)

    lost_at_commit(monkeypatch, after=unreachable)
    with pytest.raises(OutcomeUnknown):
        events_record([NewEvent(user.pk, str(run.pk), "agent_thinking", {}) for _ in range(2)])
    monkeypatch.undo()
    connection.close()
    seqs = list(RunEvent.objects.filter(user=user).order_by("seq").values_list("seq", flat=True))
    assert seqs == [1, 2, 3]  # it had committed


@postgres_only
def test_a_batch_lost_before_its_commit_fails_and_keeps_nothing(make_user, monkeypatch):
    from django.db import OperationalError

    user, run = one_event_stored(make_user)
    lost_at_commit(monkeypatch, before=lambda rows: None)
    with pytest.raises(OperationalError):
        events_record([NewEvent(user.pk, str(run.pk), "agent_thinking", {}) for _ in range(3)])
    monkeypatch.undo()
    assert UserEventCounter.objects.get(user=user).last_seq == 1
    assert [seq for seq, _, _ in events_record([NewEvent(user.pk, str(run.pk), "x", {})])] == [2]


@postgres_only
def test_a_seq_taken_by_another_writer_meanwhile_is_not_taken_for_the_lost_batch(
    make_user, monkeypatch
):
    # The lost batch did not commit, and another process stored its own event with
    # the seq the lost batch had been given: that row is not the batch's.
    import psycopg
    from django.db import OperationalError

    from tests.services import POSTGRES_URL

    user, run = one_event_stored(make_user)
    database = connection.settings_dict["NAME"]

    def other_writer_takes_seq_2(rows):
        assert rows[0][2] == 2
        time.sleep(0.2)  # the killed process ends, its transaction rolled back
        url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{database}"
        with psycopg.connect(url, autocommit=True) as other:
            other.execute(
                "INSERT INTO agents_runevent (user_id, run_id, seq, type, payload, frame, "
                "created_at) VALUES (%s, %s, 2, 'agent_thinking', '{}', 'theirs', now())",
                [user.pk, run.pk],
            )
            other.execute(
                "UPDATE agents_usereventcounter SET last_seq = 2 WHERE user_id = %s", [user.pk]
            )

    lost_at_commit(monkeypatch, before=other_writer_takes_seq_2)
    with pytest.raises(OperationalError):
        events_record([NewEvent(user.pk, str(run.pk), "agent_thinking", {})])
    monkeypatch.undo()
    frames = list(
        RunEvent.objects.filter(user=user).order_by("seq").values_list("frame", flat=True)
    )
    assert frames[1:] == ["theirs"]
