"""No table of ours keeps an index another one already covers (each costs a write per row)."""

import pytest
from django.apps import apps
from django.db import connection

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
