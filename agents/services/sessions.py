"""State changes of users' agent sessions."""

from collections.abc import Sequence

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from agents.identity import PROCESS_NAME
from agents.models import AgentSession, UserEventCounter


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
