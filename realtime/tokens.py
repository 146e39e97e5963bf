"""API token services: issue, authenticate, revoke. Only digests are stored."""

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from realtime.models import ApiToken

TOKEN_PREFIX = "cpt_"
MAX_TOKEN_CHARS = 200


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_issue(*, user: Any, name: str = "", days: int | None = 90) -> str:
    """Create a token for `user` valid for `days` (None: no expiry); return it once."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(days=days) if days else None
    ApiToken.objects.create(
        user=user, name=name, prefix=raw[:10], digest=_digest(raw), expires_at=expires_at
    )
    return raw


def token_authenticate(raw: str) -> Any | None:
    """Return the active user a valid, unexpired, unrevoked token belongs to, else None."""
    return tokens_authenticate([raw])[raw]


def tokens_authenticate(raws: Sequence[str]) -> dict[str, Any | Exception | None]:
    """Authenticate many tokens with one query: each maps to its user, or None."""
    result: dict[str, Any | Exception | None] = dict.fromkeys(raws)
    digests = {
        _digest(raw): raw
        for raw in raws
        if raw and len(raw) <= MAX_TOKEN_CHARS and raw.startswith(TOKEN_PREFIX)
    }
    now = timezone.now()
    stale = []
    for token in ApiToken.objects.select_related("user").filter(digest__in=list(digests)):
        if token.revoked_at is not None or not token.user.is_active:
            continue
        if token.expires_at is not None and token.expires_at <= now:
            continue
        result[digests[token.digest]] = token.user
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            stale.append(token.pk)
    if stale:
        ApiToken.objects.filter(pk__in=stale).update(last_used_at=now)
    return result


def token_revoke(*, token_id: int) -> None:
    """Revoke a token so it no longer authenticates."""
    ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True).update(revoked_at=timezone.now())


def user_get_or_create(*, username: str, create: bool) -> Any:
    """Return the user called `username`, creating it (unusable password) if asked."""
    model = get_user_model()
    user = model.objects.filter(username=username).first()
    if user is None:
        if not create:
            raise model.DoesNotExist(f"no user named {username!r} (use --create-user)")
        user = model(username=username)
        user.set_unusable_password()
        user.save()
    return user
