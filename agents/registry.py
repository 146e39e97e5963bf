"""AgentRegistry: one UserAgentSession per user per process, built with its emitter."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from agents.batching import Batcher
from agents.control import ProcessControl
from agents.events.emitter import EventEmitter
from agents.events.writer import EventWriter
from agents.metrics import SESSIONS
from agents.models import AgentSession
from agents.services import session_end, sessions_open
from agents.session import UserAgentSession

logger = logging.getLogger(__name__)

SessionFactory = Callable[[int], Awaitable[UserAgentSession]]


def parse_user_id(user_id: Any) -> int:
    """Return a valid user id as int, or raise ValueError for a missing or malformed one."""
    if isinstance(user_id, bool):
        raise ValueError("user id must be a positive integer, not a boolean")
    if isinstance(user_id, int):
        value = user_id
    elif isinstance(user_id, str) and user_id.strip().isdigit() and user_id.isascii():
        value = int(user_id.strip())
    else:
        raise ValueError(f"user id must be a positive integer, got {user_id!r}")
    if value <= 0:
        raise ValueError(f"user id must be a positive integer, got {user_id!r}")
    return value


class UserSessionFactory:
    """Builds a user's session together with its EventEmitter: the only way to make one."""

    def __init__(self, *, writer: EventWriter, control: ProcessControl) -> None:
        self.writer = writer
        self.control = control
        # Many users' first connections at once: their sessions are recorded together.
        self.opener: Batcher[int, AgentSession] = Batcher(sessions_open)

    async def __call__(self, user_id: int) -> UserAgentSession:
        """Record the user's session and return it, wired to the process's writer."""
        row = await self.opener.submit(user_id)
        return UserAgentSession(
            user_id=user_id,
            session_id=row.pk,
            emitter=EventEmitter(user_id=user_id, writer=self.writer),
            control=self.control,
            max_concurrent_runs=settings.AGENT_MAX_CONCURRENT_RUNS,
        )


class AgentRegistry:
    """Hands out each user's session, creating it once under a per-user lock."""

    def __init__(self, *, session_factory: SessionFactory) -> None:
        self._factory = session_factory
        self._sessions: dict[int, UserAgentSession] = {}
        # Per-user creation locks: one slow creation never holds up other users.
        self._locks: dict[int, asyncio.Lock] = {}
        # Set when the process is stopping: no new connections or runs are taken.
        self.draining = False

    async def get_user_session(self, user_id: Any) -> UserAgentSession:
        """Return the user's session, creating it (with its emitter) on first use."""
        uid = parse_user_id(user_id)
        session = self._sessions.get(uid)
        if session is not None:
            session.touch()
            return session
        lock = self._locks.setdefault(uid, asyncio.Lock())
        async with lock:
            session = self._sessions.get(uid)
            if session is None:
                session = await self._factory(uid)
                self._sessions[uid] = session
                SESSIONS.inc()
                logger.info(
                    "agent session created user_id=%s session_id=%s",
                    uid,
                    session.session_id,
                    extra={"user_id": uid},
                )
        self._locks.pop(uid, None)
        return session

    def peek(self, user_id: int) -> UserAgentSession | None:
        """Return the user's session if one exists here, without creating it."""
        return self._sessions.get(user_id)

    async def cleanup_user_session(self, user_id: Any, *, cancel_runs: bool = False) -> bool:
        """End a user's session; with runs going it is kept unless `cancel_runs`."""
        uid = parse_user_id(user_id)
        session = self._sessions.get(uid)
        if session is None:
            return False
        if session.active_run_ids() and not cancel_runs:
            return False
        self._sessions.pop(uid, None)
        SESSIONS.dec()
        await session.close(reason="session ended")
        await database_sync_to_async(session_end)(session_id=session.session_id)
        return True

    async def sweep_idle(self, *, ttl_seconds: float) -> int:
        """End sessions with no runs and no sockets, idle longer than the TTL."""
        cutoff = time.monotonic() - ttl_seconds
        idle = [
            uid
            for uid, s in self._sessions.items()
            if not s.active_run_ids() and s.connections == 0 and s.last_seen < cutoff
        ]
        ended = 0
        for uid in idle:
            ended += await self.cleanup_user_session(uid)
        return ended

    async def drain(self, *, grace_seconds: float, reason: str) -> int:
        """Stop taking work, let runs finish within the grace period, interrupt the rest."""
        self.draining = True
        tasks = [task for s in self._sessions.values() for task in s.run_tasks()]
        if tasks and grace_seconds > 0:
            await asyncio.wait(tasks, timeout=grace_seconds)
        left = self.stats()["active_runs"]
        for session in list(self._sessions.values()):
            await session.interrupt_all(reason=reason)
        return left

    async def shutdown(self) -> None:
        """End every session (on process exit)."""
        for uid in list(self._sessions):
            await self.cleanup_user_session(uid, cancel_runs=True)

    def stats(self) -> dict[str, int]:
        """Return session, connection and run counts for metrics."""
        sessions = list(self._sessions.values())
        return {
            "sessions": len(sessions),
            "connections": sum(s.connections for s in sessions),
            "active_runs": sum(len(s.active_run_ids()) for s in sessions),
        }


__all__ = ["AgentRegistry", "UserSessionFactory", "parse_user_id"]
