"""UserAgentSession: one user's runs in this process, always wired to its emitter."""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from channels.db import database_sync_to_async
from django.conf import settings

from agents.control import ProcessControl
from agents.ending import RunEnding, cancelled, completed, failed, interrupted, run_end
from agents.errors import (
    AlreadyResolved,
    InvalidRequest,
    MessageTooLarge,
    NotFound,
    reference,
)
from agents.events.emitter import EventEmitter, RunRef
from agents.identity import PROCESS_NAME
from agents.metrics import INPUT_WAKEUPS, LLM_TOKENS, RUNS_ACTIVE, RUNS_STARTED
from agents.models import Run
from agents.runtime.base import (
    Agent,
    AgentDefinition,
    AgentFailure,
    RunContext,
    load_agent_class,
)
from agents.runtime.inputs import InputAsker, InputResolution, InputWaiters, user_decision
from agents.runtime.tools import ToolDispatcher
from agents.selectors import agent_get_enabled, input_for_user, run_get_active, run_is_active
from agents.services import LocalRuns, RunDraft, RunLimits, run_admit
from agents.services.inputs import input_decide

logger = logging.getLogger(__name__)

OnBusy = Literal["enqueue", "interrupt", "reject"]
ON_BUSY_CHOICES: tuple[str, ...] = ("enqueue", "interrupt", "reject")
INTERRUPT_REASON = "interrupted by a newer message"
REMOTE_POLL_SECONDS = 0.1


class RunState(enum.Enum):
    """Where a run of this process is: not entered, waiting its turn, going, or ending."""

    QUEUED = "queued"
    WAITING = "waiting"
    RUNNING = "running"
    ENDING = "ending"


@dataclass(frozen=True)
class CancelRequest:
    """Why a run is being stopped, and how it ends: `cancelled` or `interrupted`."""

    reason: str
    outcome: str = "cancelled"


@dataclass
class ActiveRun:
    """A run this process is executing or has queued."""

    ref: RunRef
    message: str
    agent: Agent
    context: RunContext
    task: asyncio.Task[None] | None = None
    state: RunState = RunState.QUEUED
    cancel: CancelRequest | None = None
    started_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class DecidedInput:
    """An input request a user just decided, and the process whose run waits for it."""

    interrupt_id: str
    run_id: str
    process: str


@dataclass(frozen=True)
class Admission:
    """What admitting a new run found: its agent, and the runs it waits for or interrupts."""

    previous: asyncio.Task[None] | None
    remote: Run | None
    interrupted: list[ActiveRun]
    definition: AgentDefinition
    agent_cls: type[Agent]


# A RunDraft with everything but the agent row and its checked options, which are
# found on the database thread (see _prepare_and_admit).
DraftFor = functools.partial[RunDraft]


@dataclass(frozen=True)
class Prepared:
    """The agent of a start, checked, and the run admitted for it."""

    definition: AgentDefinition
    agent_cls: type[Agent]
    run: Run
    remote: Run | None


def _prepare_and_admit(
    agent_name: str,
    options: dict[str, Any],
    draft: DraftFor,
    *,
    local: LocalRuns,
    limits: RunLimits,
) -> Prepared:
    """On the database thread: the enabled agent, its checked options, then run_admit."""
    row = agent_get_enabled(name=agent_name)
    definition = _definition_from_row(row)
    agent_cls = load_agent_class(definition.implementation)
    clean = agent_cls.clean_options(options)
    run, remote = run_admit(draft(agent=row, options=clean), local=local, limits=limits)
    return Prepared(definition=definition, agent_cls=agent_cls, run=run, remote=remote)


def _definition_from_row(row: Any) -> AgentDefinition:
    return AgentDefinition(
        name=row.name,
        implementation=row.implementation,
        allowed_tools=tuple(row.allowed_tools or ()),
        approval_tools=tuple(row.approval_tools or ()),
        tool_timeout_seconds=float(row.tool_timeout_seconds),
        max_run_seconds=float(row.max_run_seconds),
        config=dict(row.config or {}),
    )


def _check_thread_id(thread_id: Any) -> str | None:
    if thread_id is None:
        return None
    try:
        return str(uuid.UUID(str(thread_id)))
    except ValueError as exc:
        raise InvalidRequest("thread_id must be a UUID or null") from exc


class UserAgentSession:
    """Owns one user's runs: starts them as tasks, limits and cancels them."""

    def __init__(
        self,
        *,
        user_id: int,
        session_id: int,
        emitter: EventEmitter,
        control: ProcessControl,
        max_concurrent_runs: int,
    ) -> None:
        if not isinstance(emitter, EventEmitter):
            raise TypeError("a UserAgentSession is always built with its EventEmitter")
        self.user_id = user_id
        self.session_id = session_id
        self._emitter = emitter
        self._control = control
        self.max_concurrent_runs = max_concurrent_runs
        self._runs: dict[str, ActiveRun] = {}
        self._thread_tail: dict[str, asyncio.Task[None]] = {}
        self._start_lock = asyncio.Lock()
        self._waiters = InputWaiters()
        self.connections = 0
        self.last_seen = time.monotonic()

    @property
    def emitter(self) -> EventEmitter:
        """Return the emitter every event of this user goes through."""
        return self._emitter

    def active_run_ids(self) -> list[str]:
        """Return the ids of the runs queued or running here."""
        return list(self._runs)

    def run_tasks(self) -> list[asyncio.Task[None]]:
        """Return the tasks of the runs queued or running here."""
        return [a.task for a in self._runs.values() if a.task is not None]

    def touch(self) -> None:
        """Note that the user was active now."""
        self.last_seen = time.monotonic()

    def attach(self) -> None:
        """Count a newly connected socket of this user."""
        self.connections += 1
        self.touch()

    def detach(self) -> None:
        """Count a closed socket of this user."""
        self.connections = max(0, self.connections - 1)
        self.touch()

    async def start_run(
        self,
        *,
        agent_name: str,
        message: str,
        thread_id: str | None = None,
        options: dict[str, Any] | None = None,
        on_busy: str = "enqueue",
        request_id: str = "",
        create_thread: bool = False,
    ) -> RunRef:
        """Start (or queue) a run of `agent_name` for `message`; return its reference.

        With `create_thread`, a `thread_id` nobody has yet becomes a new thread of
        this user (clients that name their threads, as AG-UI's do).
        """
        if on_busy not in ON_BUSY_CHOICES:
            raise InvalidRequest(f"on_busy must be one of {', '.join(ON_BUSY_CHOICES)}")
        if len(message) > settings.WS_MAX_MESSAGE_CHARS:
            raise MessageTooLarge(f"message longer than {settings.WS_MAX_MESSAGE_CHARS} characters")
        thread_id = _check_thread_id(thread_id)
        self.touch()
        async with self._start_lock:
            run, admission = await self._admit(
                agent_name,
                dict(options or {}),
                functools.partial(
                    RunDraft,
                    user_id=self.user_id,
                    session_id=self.session_id,
                    thread_id=thread_id,
                    message=message,
                    request_id=request_id,
                    on_busy=on_busy,
                    create_thread=create_thread,
                ),
            )
            definition, agent_cls = admission.definition, admission.agent_cls
            clean_options = run.options
            ref = RunRef(
                run_id=str(run.id), thread_id=str(run.thread_id), agent_name=definition.name
            )
            for active in admission.interrupted:
                self._cancel(active, INTERRUPT_REASON)
            if admission.remote is not None and on_busy == "interrupt":
                await self._control.cancel_run(
                    process=admission.remote.process,
                    run_id=str(admission.remote.pk),
                    user_id=self.user_id,
                    reason=INTERRUPT_REASON,
                )
            agent = agent_cls(definition=definition)
            asker = InputAsker(
                ref=ref,
                emitter=self._emitter,
                waiters=self._waiters,
                cancel_outcome=functools.partial(self._cancel_outcome, ref.run_id),
            )
            context = RunContext(
                ref=ref,
                message=message,
                options=clean_options,
                emitter=self._emitter,
                dispatcher=ToolDispatcher(
                    allowed_tools=definition.allowed_tools,
                    approval_tools=definition.approval_tools,
                    asker=asker,
                    timeout_seconds=min(
                        definition.tool_timeout_seconds, settings.AGENT_TOOL_TIMEOUT_SECONDS
                    ),
                ),
                asker=asker,
            )
            active = ActiveRun(ref=ref, message=message, agent=agent, context=context)
            self._runs[ref.run_id] = active
            RUNS_STARTED.inc()
            RUNS_ACTIVE.inc()
            remote_id = str(admission.remote.pk) if admission.remote is not None else None
            task = asyncio.create_task(
                self._drive(active, admission.previous, remote_id), name=f"run-{ref.run_id}"
            )
            active.task = task
            self._thread_tail[ref.thread_id] = task
        return ref

    async def _admit(
        self, agent_name: str, options: dict[str, Any], draft: DraftFor
    ) -> tuple[Run, Admission]:
        """Find the agent, check the options, apply on_busy and the limits; create the run.

        One trip to the database thread for all of it (a start's latency is mostly
        these hops and queries).
        """
        thread_id = draft.keywords["thread_id"]
        previous = self._thread_tail.get(thread_id) if thread_id else None
        if previous is not None and previous.done():
            previous = None
        on_busy = draft.keywords["on_busy"]
        interrupted = self._runs_in_thread(thread_id) if on_busy == "interrupt" else []
        prepared = await database_sync_to_async(_prepare_and_admit)(
            agent_name,
            options,
            draft,
            local=LocalRuns(
                run_ids=list(self._runs),
                thread_busy=previous is not None,
                leaving=len(interrupted),
            ),
            limits=RunLimits(
                max_runs=self.max_concurrent_runs,
                rate=settings.WS_START_RATE_PER_SECOND,
                burst=settings.WS_START_RATE_BURST,
            ),
        )
        return prepared.run, Admission(
            previous=previous,
            remote=prepared.remote,
            interrupted=interrupted,
            definition=prepared.definition,
            agent_cls=prepared.agent_cls,
        )

    async def cancel_run(self, run_id: str, *, reason: str = "stopped by user") -> None:
        """Cancel one of this user's queued or running runs; NotFound otherwise."""
        active = self._runs.get(str(run_id))
        if active is not None:
            self._cancel(active, reason)
            return
        run = await database_sync_to_async(run_get_active)(user_id=self.user_id, run_id=run_id)
        if run is None:
            raise NotFound("no queued or running run with that id")
        # The run lives in another process: ask it, through its control group.
        await self._control.cancel_run(
            process=run.process,
            run_id=str(run.pk),
            user_id=self.user_id,
            reason=reason,
        )

    async def resolve_input(
        self, resolution: InputResolution, *, connection_id: str = ""
    ) -> DecidedInput:
        """Record the user's decision on one of their input requests; the first decision wins.

        Raises NotFound (unknown, or another user's: the two look the same),
        AlreadyResolved, or InvalidRequest (the decision does not fit the request).
        """
        self.touch()
        row = await database_sync_to_async(input_for_user)(
            user_id=self.user_id, interrupt_id=resolution.interrupt_id
        )
        if row is None:
            raise NotFound("no input request with that id")
        if row.outcome != row.Outcome.PENDING:
            raise AlreadyResolved(f"this request was already resolved ({row.outcome})")
        decision = user_decision(row, resolution)
        decided = await database_sync_to_async(input_decide)(
            interrupt_id=row.pk,
            user_id=self.user_id,
            decision=decision,
            connection_id=connection_id,
            unexpired=True,
        )
        if not decided:
            raise AlreadyResolved("this request was already resolved, or it has expired")
        logger.info(
            "input decided user_id=%s run_id=%s interrupt_id=%s outcome=%s connection=%s",
            self.user_id,
            row.run_id,
            row.pk,
            decision.outcome,
            connection_id,
            extra={"user_id": self.user_id, "run_id": str(row.run_id)},
        )
        return DecidedInput(interrupt_id=row.pk, run_id=str(row.run_id), process=row.run.process)

    async def wake_input(self, decided: DecidedInput) -> None:
        """Wake the run waiting on a decided request, here or through its process's control."""
        if self._waiters.wake(decided.interrupt_id):
            INPUT_WAKEUPS.labels("local").inc()
            return
        if decided.process == PROCESS_NAME:
            return  # its run is gone (or polls its row): nothing to wake
        try:
            await self._control.wake_input(
                process=decided.process, user_id=self.user_id, interrupt_id=decided.interrupt_id
            )
        except Exception:
            # The waiting run polls its row too: it goes on, only later.
            logger.exception(
                "waking a run in another process failed user_id=%s interrupt_id=%s",
                self.user_id,
                decided.interrupt_id,
                extra={"user_id": self.user_id, "run_id": decided.run_id},
            )

    def wake_local(self, interrupt_id: str) -> bool:
        """Wake a run of this process waiting on the request (a control message said so)."""
        woken = self._waiters.wake(interrupt_id)
        if woken:
            INPUT_WAKEUPS.labels("control").inc()
        return woken

    def _cancel_outcome(self, run_id: str) -> tuple[str, str]:
        """Return how a pending request of a cancelled run ends: (outcome, decided by)."""
        active = self._runs.get(run_id)
        cancel = active.cancel if active is not None else None
        if cancel is None:
            return ("expired", "timeout")  # the run's own time limit
        if cancel.outcome == "interrupted":
            return ("interrupted", "shutdown")
        return ("cancelled", "cancel")

    async def cancel_local(self, run_id: str, *, reason: str) -> bool:
        """Cancel a run if this process runs it; tell whether it did."""
        active = self._runs.get(str(run_id))
        if active is None:
            return False
        self._cancel(active, reason)
        return True

    async def wait_run(self, run_id: str) -> None:
        """Wait until a run known to this session has ended."""
        active = self._runs.get(str(run_id))
        if active is not None and active.task is not None:
            await asyncio.wait({active.task})

    async def interrupt_all(self, *, reason: str) -> None:
        """End every run here as interrupted (the process is going away) and wait."""
        await self._cancel_all(reason, outcome="interrupted")

    async def close(self, *, reason: str = "session closed") -> None:
        """Cancel every run of this session and wait for them to record their end."""
        await self._cancel_all(reason, outcome="cancelled")

    async def _cancel_all(self, reason: str, *, outcome: str) -> None:
        tasks = []
        for active in list(self._runs.values()):
            self._cancel(active, reason, outcome)
            if active.task is not None:
                tasks.append(active.task)
        if tasks:
            await asyncio.wait(tasks)

    def _runs_in_thread(self, thread_id: str | None) -> list[ActiveRun]:
        return [a for a in self._runs.values() if thread_id and a.ref.thread_id == thread_id]

    def _cancel(self, active: ActiveRun, reason: str, outcome: str = "cancelled") -> None:
        if active.cancel is not None:
            return
        active.cancel = CancelRequest(reason, outcome)
        # A task cancelled before its first step never runs its body, so it could
        # not record the cancel; such a run sees the request when it enters instead.
        # A run recording its end is left to finish it: cut short, its last event
        # would never be stored, and whoever waits for the run would not wait for it.
        if active.state in (RunState.WAITING, RunState.RUNNING) and active.task is not None:
            active.task.cancel()

    async def _drive(
        self, active: ActiveRun, previous: asyncio.Task[None] | None, remote_id: str | None
    ) -> None:
        ref = active.ref
        active.state = RunState.WAITING
        try:
            ending = await self._outcome(active, previous, remote_id)
            started = active.state is RunState.RUNNING
            active.state = RunState.ENDING
            await self._end(active, ending, started=started)
        except Exception:
            # Recording the end failed (database gone?). The run row stays
            # 'running' and the interrupted-run sweep ends it later.
            logger.exception(
                "run could not record its end user_id=%s run_id=%s",
                self.user_id,
                ref.run_id,
                extra={"user_id": self.user_id, "run_id": ref.run_id},
            )
        finally:
            self._runs.pop(ref.run_id, None)
            RUNS_ACTIVE.dec()
            if self._thread_tail.get(ref.thread_id) is asyncio.current_task():
                del self._thread_tail[ref.thread_id]

    async def _outcome(
        self, active: ActiveRun, previous: asyncio.Task[None] | None, remote_id: str | None
    ) -> RunEnding:
        """Run the agent (after the run ahead in its thread); return how it ended."""
        try:
            if active.cancel is not None:
                raise asyncio.CancelledError
            if previous is not None:
                await asyncio.wait({previous})
            if remote_id is not None:
                await self._wait_remote(remote_id)
            await self._begin(active)
            limit = min(active.agent.definition.max_run_seconds, settings.AGENT_RUN_TIMEOUT_SECONDS)
            async with asyncio.timeout(limit):
                result = await active.agent.run(active.context)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            cancel = active.cancel or CancelRequest("cancelled")
            if cancel.outcome == "interrupted":
                return interrupted(cancel.reason)
            return cancelled(cancel.reason)
        except TimeoutError:
            return failed("timeout", "the run took too long")
        except AgentFailure as failure:
            # Users see plain words and a reference; the log and the admin, the detail.
            ref = reference()
            logger.warning(
                "run failed user_id=%s run_id=%s code=%s ref=%s: %s",
                self.user_id,
                active.ref.run_id,
                failure.code,
                ref,
                failure.detail or failure.message,
                extra={"user_id": self.user_id, "run_id": active.ref.run_id},
            )
            return failed(
                failure.code,
                f"{failure.message[:450]} (reference {ref})",
                detail=f"ref {ref}: {failure.detail or failure.message}"[:2000],
            )
        except Exception as exc:
            ref = reference()
            logger.exception(
                "run failed user_id=%s run_id=%s ref=%s",
                self.user_id,
                active.ref.run_id,
                ref,
                extra={"user_id": self.user_id, "run_id": active.ref.run_id},
            )
            return failed(
                "agent_failed",
                f"the agent ran into a problem (reference {ref})",
                detail=f"ref {ref}: {type(exc).__name__}: {exc}"[:2000],
            )
        return completed(str(result), _ms(active))

    async def _end(self, active: ActiveRun, ending: RunEnding, *, started: bool) -> None:
        usage = active.context.usage
        if usage is not None:
            ending = ending.with_usage(usage.as_dict())
            name = active.ref.agent_name
            LLM_TOKENS.labels(name, "input").inc(usage.input_tokens)
            LLM_TOKENS.labels(name, "output").inc(usage.output_tokens)
        await run_end(
            self._emitter,
            active.ref,
            ending,
            started=started,
            message=active.message,
        )

    async def _wait_remote(self, run_id: str) -> None:
        # The run ahead in this thread is in another process: wait until it ends.
        while await database_sync_to_async(run_is_active)(run_id=run_id):  # noqa: ASYNC110
            await asyncio.sleep(REMOTE_POLL_SECONDS)

    async def _begin(self, active: ActiveRun) -> None:
        active.started_at = time.monotonic()
        # Set before the event is queued: it is stored even if the run is cancelled
        # meanwhile. Queued, not awaited: the agent starts without waiting for the
        # commit, and the event (with the run's change to running) is stored and
        # sent before any later event of the run.
        active.state = RunState.RUNNING
        await self._emitter.stream(
            active.ref,
            "agent_started",
            {"message": active.message},
            run_change={"status": Run.Status.RUNNING},
        )


def _ms(active: ActiveRun) -> int:
    return int((time.monotonic() - active.started_at) * 1000)
