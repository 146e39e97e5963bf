"""Process duties beside serving sockets: heartbeat, sweeps, control, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection

from agents.control import CANCEL_RUN, END_SESSION, INPUT_DECIDED, describe, process_group
from agents.ending import interrupted, run_end
from agents.events.emitter import EventEmitter, RunRef
from agents.events.writer import EventWriter
from agents.models import Run
from agents.registry import AgentRegistry
from agents.runtime.inputs import orphan_inputs_close
from agents.selectors import run_has_events
from agents.services import (
    PROCESS_NAME,
    dead_processes_sweep,
    process_beat,
    process_stop,
    run_claim_interrupted,
)
from realtime.hub import LocalHub
from realtime.inbox import ProcessInbox

logger = logging.getLogger(__name__)

ORPHAN_MESSAGE = "the server process running this run stopped"
SHUTDOWN_MESSAGE = "the server is restarting; the run was interrupted"
# How long a stopping process waits for its events to other processes to be sent.
OUTBOX_DRAIN_SECONDS = 5.0


class ProcessLifecycle:
    """Starts and stops the background work of one server process."""

    def __init__(
        self,
        *,
        registry: AgentRegistry,
        writer: EventWriter,
        inbox: ProcessInbox,
        hub: LocalHub,
    ) -> None:
        self.registry = registry
        self.writer = writer
        self.inbox = inbox
        self.hub = hub
        inbox.on(CANCEL_RUN, self._on_control)
        inbox.on(END_SESSION, self._on_control)
        inbox.on(INPUT_DECIDED, self._on_input_decided)
        self.started = False
        self.stopped = False
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_sweep = 0.0

    async def start(self) -> None:
        """Announce this process, end orphaned runs, and start the background loops."""
        async with self._start_lock:
            if self.started:
                return
            self.started = True
            try:
                await database_sync_to_async(process_beat)()
                await self.sweep_orphans()
            except Exception:
                # A database that is down at start must not stop us serving /healthz
                # and /readyz (which reports it); the heartbeat loop keeps trying.
                logger.exception("process start-up housekeeping failed; will retry")
            self._tasks = [
                asyncio.create_task(self._heartbeat_loop(), name="process-heartbeat"),
                asyncio.create_task(self._control_loop(), name="process-control"),
            ]
            if connection.vendor == "sqlite":
                self._tasks.append(
                    asyncio.create_task(self._checkpoint_loop(), name="sqlite-checkpoint")
                )
            hook_twisted_shutdown(self)
            logger.info("process started name=%s", PROCESS_NAME)

    async def sweep_orphans(self) -> int:
        """End runs whose process died with agent_error `interrupted`; return how many."""
        self._last_sweep = time.monotonic()
        runs = await database_sync_to_async(dead_processes_sweep)(
            stale_after_seconds=settings.PROCESS_STALE_SECONDS
        )
        ended = 0
        for run in runs:
            if await self._interrupt_orphan(run):
                ended += 1
        if ended:
            logger.warning("interrupted %s runs left by stopped processes", ended)
        return ended

    async def _interrupt_orphan(self, run: Run) -> bool:
        claimed = await database_sync_to_async(run_claim_interrupted)(
            run_id=str(run.pk), message=ORPHAN_MESSAGE
        )
        if not claimed:
            return False  # another process got there first
        # The user may have no session here: the orphan's events need only an emitter.
        emitter = EventEmitter(user_id=run.user_id, writer=self.writer)
        ref = RunRef(run_id=str(run.pk), thread_id=str(run.thread_id), agent_name=run.agent.name)
        # Its input requests end with it, so that no tab keeps offering them.
        await orphan_inputs_close(emitter, ref)
        await run_end(
            emitter,
            ref,
            interrupted(ORPHAN_MESSAGE),
            started=await database_sync_to_async(run_has_events)(run_id=str(run.pk)),
            message=run.message,
        )
        return True

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(settings.PROCESS_HEARTBEAT_SECONDS)
            try:
                await database_sync_to_async(process_beat)()
                if time.monotonic() - self._last_sweep >= settings.PROCESS_SWEEP_SECONDS:
                    await self.sweep_orphans()
                    await self.registry.sweep_idle(ttl_seconds=settings.SESSION_IDLE_TTL_SECONDS)
            except Exception:
                logger.exception("process housekeeping failed; retrying next beat")

    async def _checkpoint_loop(self) -> None:
        """Checkpoint SQLite's write-ahead log here, off the event writer's commits."""
        while True:
            await asyncio.sleep(settings.SQLITE_CHECKPOINT_SECONDS)
            try:
                await database_sync_to_async(sqlite_checkpoint)()
            except Exception:
                logger.exception("SQLite checkpoint failed; retrying")

    async def _control_loop(self) -> None:
        """Join this process's control group (its messages arrive through the inbox)."""
        while True:
            try:
                await self.inbox.join(process_group(PROCESS_NAME))
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("joining the control group failed; retrying in 1 s")
                await asyncio.sleep(1)

    async def _on_control(self, message: dict[str, Any]) -> None:
        logger.info("control message %s", describe(message))
        registry = self.registry
        session = registry.peek(int(message["user_id"]))
        if session is None:
            return
        if message.get("type") == CANCEL_RUN:
            await session.cancel_local(str(message["run_id"]), reason=str(message["reason"]))
        elif message.get("type") == END_SESSION and session.session_id == message["session_id"]:
            await registry.cleanup_user_session(session.user_id, cancel_runs=True)

    async def _on_input_decided(self, message: dict[str, Any]) -> None:
        session = self.registry.peek(int(message["user_id"]))
        if session is None or not session.wake_local(str(message["interrupt_id"])):
            # The run stopped waiting meanwhile, or polls its row: nothing is lost.
            logger.info("no run here waits on %s", message.get("interrupt_id"))

    async def shutdown(self) -> None:
        """Stop taking work, give runs a grace period, interrupt the rest, and say so."""
        if self.stopped:
            return
        self.stopped = True
        grace = settings.AGENT_SHUTDOWN_GRACE_SECONDS
        logger.info("process stopping name=%s grace=%ss", PROCESS_NAME, grace)
        left = await self.registry.drain(grace_seconds=grace, reason=SHUTDOWN_MESSAGE)
        if left:
            logger.warning("interrupted %s runs still going after the grace period", left)
        for task in self._tasks:
            task.cancel()
        try:
            # The runs' last events, for the other processes' sockets of their users.
            async with asyncio.timeout(OUTBOX_DRAIN_SECONDS):
                await self.hub.drain()
        except TimeoutError:
            logger.warning(
                "events for other processes still unsent after %ss", OUTBOX_DRAIN_SECONDS
            )
        await self.inbox.close()
        await database_sync_to_async(process_stop)()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def sqlite_checkpoint() -> None:
    """Copy SQLite's write-ahead log into the database without blocking writers (PASSIVE)."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")


def hook_twisted_shutdown(lifecycle: ProcessLifecycle) -> None:
    """Under daphne, make the reactor wait for our shutdown before it stops."""
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import defer, reactor

    if not reactor.running:  # type: ignore[attr-defined]
        return

    def before_shutdown() -> defer.Deferred[None]:
        return defer.Deferred.fromFuture(asyncio.ensure_future(lifecycle.shutdown()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[attr-defined,arg-type]


class LifecycleMiddleware:
    """Starts the process's lifecycle on first use; answers ASGI lifespan events."""

    def __init__(self, app: Any, *, lifecycle: ProcessLifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """Make sure the lifecycle runs, then hand the scope on."""
        lifecycle = self.lifecycle
        if scope["type"] == "lifespan":
            return await self._lifespan(lifecycle, receive, send)
        if settings.PROCESS_LIFECYCLE_AUTOSTART and not lifecycle.started:
            await lifecycle.start()
        return await self.app(scope, receive, send)

    async def _lifespan(self, lifecycle: ProcessLifecycle, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if settings.PROCESS_LIFECYCLE_AUTOSTART:
                    await lifecycle.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await lifecycle.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
