"""ASGI middleware for WebSocket upgrades: bearer tokens and the Origin check."""

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from realtime.tokens import token_authenticate


def bearer_token(scope: dict[str, Any]) -> str | None:
    """Return the bearer token of the upgrade request, '' if malformed, None if absent."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope['user'] from `Authorization: Bearer <token>` when the header is sent."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """Authenticate by token, overriding the cookie session when a token is given."""
        token = bearer_token(scope)
        if token is not None:
            user = await database_sync_to_async(token_authenticate)(token) if token else None
            scope = dict(scope, user=user or AnonymousUser())
        return await super().__call__(scope, receive, send)


class BrowserOriginValidator(OriginValidator):
    """Checks Origin against ALLOWED_HOSTS; clients that send none (scripts) pass."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, [])

    def valid_origin(self, parsed_origin: Any) -> bool:
        """Allow a missing Origin (browsers always send one); else match ALLOWED_HOSTS."""
        if parsed_origin is None:
            return True
        return any(
            pattern == "*" or self.match_allowed_origin(parsed_origin, pattern)
            for pattern in settings.ALLOWED_HOSTS
        )


def websocket_stack(inner: Any) -> Any:
    """Wrap the WebSocket router: Origin check, cookie session, then bearer token."""
    return BrowserOriginValidator(AuthMiddlewareStack(TokenAuthMiddleware(inner)))
