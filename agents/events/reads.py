"""Reads of a user's stored events, for replays and gap fills."""

from collections.abc import Sequence

from django.db.models import QuerySet

from agents import sql
from agents.models import RunEvent, UserEventCounter


def user_last_seq(*, user_id: int) -> int:
    """Return the seq of the user's latest event (0 if none)."""
    # Written out (agents/sql.py): every resume reads it, and a reconnecting crowd
    # resumes all at once.
    row = sql.fetch_one(
        f"SELECT {sql.column(UserEventCounter, 'last_seq')} FROM {sql.table(UserEventCounter)} "
        f"WHERE {sql.column(UserEventCounter, 'user')} = %s",
        [user_id],
    )
    return int(row[0]) if row is not None else 0


# Users whose last seq one query reads (well under any database's parameter limit).
USERS_PER_QUERY = 500


def users_last_seq(user_ids: Sequence[int]) -> dict[int, int]:
    """Return user_last_seq of several users, USERS_PER_QUERY a query (users without events: 0)."""
    user = sql.column(UserEventCounter, "user")
    select = (
        f"SELECT {user}, {sql.column(UserEventCounter, 'last_seq')} "
        f"FROM {sql.table(UserEventCounter)} WHERE {user} IN "
    )
    last = dict.fromkeys(user_ids, 0)
    for first in range(0, len(user_ids), USERS_PER_QUERY):
        chunk = list(user_ids[first : first + USERS_PER_QUERY])
        found = sql.fetch_all(select + f"({', '.join(['%s'] * len(chunk))})", chunk)
        last.update((int(uid), int(seq)) for uid, seq in found)
    return last


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
    # Written out, as user_last_seq is: each resume and gap fill reads a page.
    seq_column = sql.column(RunEvent, "seq")
    where = f"{sql.column(RunEvent, 'user')} = %s AND {seq_column} > %s"
    params = [user_id, seq]
    if through_seq is not None:
        where += f" AND {seq_column} <= %s"
        params.append(through_seq)
    rows = sql.fetch_all(
        f"SELECT {seq_column}, {sql.column(RunEvent, 'frame')} FROM {sql.table(RunEvent)} "
        f"WHERE {where} ORDER BY {seq_column} LIMIT {int(limit)}",
        params,
    )
    return [(int(found), str(frame)) for found, frame in rows]


# (user, after seq, limit, through seq): one page that frames_after_many reads.
PageKey = tuple[int, int, int, int | None]

# SQLite allows 500 SELECTs in a compound one: pages are read this many a query.
PAGES_PER_QUERY = 100


def frames_after_many(keys: Sequence[PageKey]) -> list[list[tuple[int, str]]]:
    """Return frames_after of each key, in order, reading up to PAGES_PER_QUERY pages a query."""
    pages: list[list[tuple[int, str]]] = [[] for _ in keys]
    seq, frame = sql.column(RunEvent, "seq"), sql.column(RunEvent, "frame")
    user, table = sql.column(RunEvent, "user"), sql.table(RunEvent)
    for first in range(0, len(keys), PAGES_PER_QUERY):
        arms: list[str] = []
        params: list[int] = []
        for index, (user_id, after, limit, through) in enumerate(
            keys[first : first + PAGES_PER_QUERY], start=first
        ):
            where = f"{user} = %s AND {seq} > %s"
            params += (user_id, after)
            if through is not None:
                where += f" AND {seq} <= %s"
                params.append(through)
            arms.append(
                f"SELECT {index} AS k, p.s, p.f FROM (SELECT {seq} AS s, {frame} AS f "
                f"FROM {table} WHERE {where} ORDER BY {seq} LIMIT {int(limit)}) p"
            )
        for index, found, text in sql.fetch_all(" UNION ALL ".join(arms), params):
            pages[index].append((int(found), str(text)))
    for page in pages:
        page.sort()  # UNION ALL keeps no order between or within its parts
    return pages


def count_between(*, user_id: int, after_seq: int, through_seq: int) -> int:
    """Count the user's stored events with after_seq < seq <= through_seq."""
    return RunEvent.objects.filter(user_id=user_id, seq__gt=after_seq, seq__lte=through_seq).count()
