"""Reads of a user's stored events, for replays and gap fills."""

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


def count_between(*, user_id: int, after_seq: int, through_seq: int) -> int:
    """Count the user's stored events with after_seq < seq <= through_seq."""
    return RunEvent.objects.filter(user_id=user_id, seq__gt=after_seq, seq__lte=through_seq).count()
