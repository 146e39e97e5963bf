"""State changes of the WebSocket connections recorded per user."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from agents.errors import RateLimited
from agents.identity import PROCESS_NAME
from agents.models import AgentSession, Connection, UserEventCounter


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
