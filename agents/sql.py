"""Statements of the hot paths written out, their columns and values prepared by the models' fields.

On these paths (a start's admission, the event writer's batches) building a
query with the ORM took about ten times as long as running it (0.3-0.9 ms
against 0.05-0.1 ms a statement on SQLite, measured). So the statements are
written here, but the table and column names, the values sent and the values
read back still go through each field, as the ORM's would: a renamed column or
a changed field type cannot drift from them. tests/agents/test_sql.py checks
each helper against the ORM on SQLite and PostgreSQL.
"""

import sqlite3
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def quote(name: str) -> str:
    """Quote a table or column name for the default database."""
    return connection.ops.quote_name(name)


def table(model: type[Model]) -> str:
    """Return the model's quoted table name."""
    return _quoted(connection.vendor, model._meta.db_table)


@cache
def field(model: type[Model], name: str) -> "Field[Any, Any]":
    """Return the model's concrete field called `name` (a relation's name gives its id field)."""
    found = model._meta.get_field(name)
    assert isinstance(found, Field) and found.concrete, f"{model.__name__}.{name} is not a column"
    return found


def column(model: type[Model], name: str) -> str:
    """Return the quoted column of the model's field called `name`."""
    return _quoted(connection.vendor, str(field(model, name).column))


@cache
def _quoted(vendor: str, name: str) -> str:
    # Quoting depends only on the database vendor: done once per name.
    return quote(name)


def prep(model: type[Model], name: str, value: Any) -> Any:
    """Return `value` as the field called `name` sends it to the database."""
    return field(model, name).get_db_prep_save(value, connection)


def marks(values: Sequence[Any]) -> str:
    """Return one placeholder per value, for an IN (...) list."""
    return ", ".join("%s" for _ in values)


class QmarkCursor:
    """A sqlite3 cursor taking the %s placeholders these statements are written with.

    Django's SQLite cursor rewrites %s to ? with a regular expression at every
    execute (3 % of daphne's samples with the event writer busy, bench/RESULTS.md);
    this one rewrites each statement's text once.
    """

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        """Run one statement."""
        self._cursor.execute(_qmarks(sql), params)

    def fetchall(self) -> list[Any]:
        """Return the rows the statement returned."""
        return self._cursor.fetchall()

    def close(self) -> None:
        """Close the cursor."""
        self._cursor.close()


@lru_cache(maxsize=256)
def _qmarks(sql: str) -> str:
    # Django's regular expression took 2.4 µs a row of a batch insert (seven
    # marks); plain replaces take a tenth of that, for the texts not cached
    # (a batch's insert text differs with its number of rows). "%%" is a literal
    # "%" (set aside first, so that "%%s" stays the text "%s").
    return sql.replace("%%", "\0").replace("%s", "?").replace("\0", "%")


def execute(sql: str, params: Sequence[Any] = ()) -> int:
    """Run one statement; return the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def fetch_one(sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    """Run one query; return its first row, or None."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else tuple(row)


def fetch_all(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one query; return all its rows."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def insert(obj: Model) -> None:
    """INSERT a new instance with all its columns, as save() would (without its signals)."""
    model = type(obj)
    fields = model._meta.concrete_fields
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    columns = ", ".join(quote(str(f.column)) for f in fields)
    marks = ", ".join("%s" for _ in fields)
    execute(f"INSERT INTO {table(model)} ({columns}) VALUES ({marks})", values)
    obj._state.adding = False
    obj._state.db = connection.alias


def select(
    model: type[M], where: str, params: Sequence[Any], *, order: str = "", limit: int = 21
) -> list[M]:
    """Return the instances whose rows match `where` (written with column()), at most `limit`."""
    columns, names, converters = _reading(model, connection.vendor)
    order_by = f" ORDER BY {order}" if order else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {table(model)} WHERE {where}{order_by} LIMIT {int(limit)}",
            params,
        )
        rows = cursor.fetchall()
    found = []
    for row in rows:
        values = list(row)
        for index, convert, expression in converters:
            for converter in convert:
                values[index] = converter(values[index], expression, connection)
        found.append(model.from_db(connection.alias, names, values))
    return found


@cache
def _reading(model: type[Model], vendor: str) -> tuple[str, list[str], list[Any]]:
    """The columns to read a model's rows, and the conversions the ORM applies to them."""
    fields = model._meta.concrete_fields
    converters = []
    for index, f in enumerate(fields):
        expression = f.get_col(model._meta.db_table)
        convert = [
            *connection.ops.get_db_converters(expression),
            *expression.get_db_converters(connection),
        ]
        if convert:
            converters.append((index, convert, expression))
    columns = ", ".join(quote(str(f.column)) for f in fields)
    return columns, [f.attname for f in fields], converters
