"""Our tables write no page per row they need not: no covered index, no id sequence row."""

import pytest
from django.apps import apps
from django.db import connection

from agents.events.store import NewEvent, events_record
from agents.models import RunEvent
from tests.rows import full_run

pytestmark = pytest.mark.django_db


def indexes_of(table: str) -> list[tuple[tuple[str, ...], bool]]:
    """(columns, unique) of every index of the table, primary key included."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [
        (tuple(c["columns"]), bool(c["unique"] or c["primary_key"]))
        for c in constraints.values()
        if (c["index"] or c["unique"] or c["primary_key"]) and c["columns"]
    ]


OUR_MODELS = [m for app in ("agents", "realtime") for m in apps.get_app_config(app).get_models()]


@pytest.mark.parametrize("model", OUR_MODELS, ids=lambda model: model.__name__)
def test_no_plain_index_is_a_prefix_of_another(model):
    found = indexes_of(model._meta.db_table)
    redundant = [
        (columns, longer)
        for columns, unique in found
        if not unique
        for longer, _ in found
        if longer != columns and longer[: len(columns)] == columns
    ]
    assert not redundant, f"{model.__name__}: {redundant} (index, covered by)"


def test_events_are_found_by_user_and_by_run():
    found = [columns for columns, _ in indexes_of("agents_runevent")]
    assert ("user_id", "seq") in found and ("run_id", "seq") in found


def table_sql(table: str) -> str:
    """The CREATE TABLE statement SQLite keeps for the table."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [table])
        return cursor.fetchone()[0]


def sequence_rows() -> set[str]:
    """The tables SQLite keeps an AUTOINCREMENT counter row for."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_sequence")
        return {name for (name,) in cursor.fetchall()}


def record(user, run, count: int) -> None:
    """Store count events of the run."""
    events_record([NewEvent(user.pk, str(run.pk), "agent_thinking", {}) for _ in range(count)])


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's AUTOINCREMENT only")
def test_storing_events_writes_no_sqlite_sequence_row(make_user):
    user = make_user()
    record(user, full_run(user), 3)
    assert "AUTOINCREMENT" not in table_sql("agents_runevent").upper()
    assert "agents_runevent" not in sequence_rows()
    # the other tables keep Django's usual ids: only the per-event table is changed
    assert "AUTOINCREMENT" in table_sql("agents_agent").upper()


def test_event_ids_are_distinct_and_given_in_order(make_user):
    user = make_user()
    run = full_run(user)
    record(user, run, 3)
    record(user, run, 2)
    ids = list(RunEvent.objects.filter(user=user).order_by("seq").values_list("id", flat=True))
    assert len(ids) == 5 and ids == sorted(set(ids))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's identity column only")
def test_event_ids_stay_an_identity_column_on_postgresql():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT is_identity FROM information_schema.columns"
            " WHERE table_name = 'agents_runevent' AND column_name = 'id'"
        )
        assert cursor.fetchone() == ("YES",)
