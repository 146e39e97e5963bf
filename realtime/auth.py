"""ASGI middleware for WebSocket upgrades: bearer tokens and the Origin check."""

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from agents.batching import Batcher


def bearer_token(scope: dict[str, Any]) -> str | None:
    """Return the bearer token of the upgrade request, '' if malformed, None if absent."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class TokenAuthMiddleware:
    """Authenticates by `Authorization: Bearer <token>`; without the header, the cookie stack.

    A socket that sends a token is authenticated by it alone (the cookie session
    is not loaded: one database round trip fewer, and less held per socket);
    many sockets connecting at once share one token lookup.
    """

    def __init__(self, inner: Any, *, cookies: Any, tokens: Batcher[str, Any]) -> None:
        self.inner = inner
        self.cookies = cookies
        self.tokens = tokens

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """Pass a token socket on with its user (anonymous if the token is bad)."""
        token = bearer_token(scope)
        if token is None:
            return await self.cookies(scope, receive, send)
        user = await self.tokens.submit(token) if token else None
        return await self.inner(dict(scope, user=user or AnonymousUser()), receive, send)


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


def websocket_stack(inner: Any, *, tokens: Batcher[str, Any]) -> Any:
    """Wrap the WebSocket router: Origin check, then a bearer token or the cookie session."""
    return BrowserOriginValidator(
        TokenAuthMiddleware(inner, cookies=AuthMiddlewareStack(inner), tokens=tokens)
    )


def http_stack(inner: Any, *, tokens: Batcher[str, Any]) -> Any:
    """Wrap an HTTP endpoint: a bearer token or the cookie session (it checks Origin itself)."""
    return TokenAuthMiddleware(inner, cookies=AuthMiddlewareStack(inner), tokens=tokens)
