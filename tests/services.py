"""Finding the optional Redis and PostgreSQL servers, or skipping with a reason.

Locally a missing server skips its tests. CI sets REQUIRE_SERVICES=1, which
turns a missing server into a failure, so CI always exercises both for real.
"""

import os
import socket
from urllib.parse import urlparse

import pytest

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def missing_service(what: str, url: str) -> None:
    reason = f"{what} not reachable at {url} (set REQUIRE_SERVICES=1 to make this a failure)"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not reachable at {url}")
    pytest.skip(reason)


def require_redis() -> str:
    """Return the Redis URL, or skip (fail under REQUIRE_SERVICES=1) if it is down."""
    if not reachable(REDIS_URL, 6379):
        missing_service("Redis", REDIS_URL)
    return REDIS_URL


def require_postgres() -> str:
    """Return the PostgreSQL URL, or skip (fail under REQUIRE_SERVICES=1) if it is down."""
    if not reachable(POSTGRES_URL, 5432):
        missing_service("PostgreSQL", POSTGRES_URL)
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:  # a server that refuses us is as good as absent
        missing_service(f"PostgreSQL ({exc.__class__.__name__})", POSTGRES_URL)
    return POSTGRES_URL


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
