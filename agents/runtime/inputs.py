"""Human in the loop: a run asks its user (approve a tool call, or answer) and waits.

The request is stored (an InputRequest row) before its `input_requested` event
goes out, so an answer from any tab on any process finds it. Deciding is one
conditional UPDATE (agents/services/inputs.py), so the first decision wins:
a user's answer, the timeout, a cancel or a shutdown. The waiting run reads the
decision from the row, woken by the deciding process (directly, or through its
control group) and, should a wake-up be lost, by polling; then it emits
`input_resolved` and goes on. Only the run's own task emits its events.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from agents.errors import InvalidRequest
from agents.events.emitter import EventEmitter, RunRef
from agents.events.frames import iso_utc
from agents.events.schema import clean_event_data
from agents.metrics import INPUT_WAKEUPS, INPUTS_REQUESTED, INPUTS_RESOLVED
from agents.models import InputRequest, Run
from agents.runtime.tools import ToolError, get_tool
from agents.selectors import input_get, inputs_unreported
from agents.services.inputs import (
    InputDecision,
    InputDraft,
    input_decide,
    input_open,
    inputs_close_for_run,
)

logger = logging.getLogger(__name__)

Kind = InputRequest.Kind
Outcome = InputRequest.Outcome
By = InputRequest.DecidedBy

# How often a waiting run looks at its request's row, in case a wake-up was lost.
POLL_SECONDS = 2.0
MAX_QUESTION_CHARS = 2000
MAX_REJECT_MESSAGE_CHARS = 500
DECISIONS = ("approve", "reject", "edit", "answer")


@dataclass(frozen=True)
class InputResolution:
    """A user's decision on an input request, as a client sent it."""

    interrupt_id: str
    decision: str
    message: str = ""
    parameters: dict[str, Any] | None = None
    answer: Any = None


@dataclass(frozen=True)
class InputAnswer:
    """What `RunContext.ask` returns: how the question ended, and the answer if there is one."""

    outcome: str
    answer: Any = None
    message: str = ""

    @property
    def answered(self) -> bool:
        """Tell whether the user answered."""
        return self.outcome == Outcome.ANSWERED


class InputWaiters:
    """The wake-up signals of this session's runs that wait for their user."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def open(self, interrupt_id: str) -> asyncio.Event:
        """Make the signal a run waits on."""
        event = self._events[interrupt_id] = asyncio.Event()
        return event

    def close(self, interrupt_id: str) -> None:
        """Forget a signal once its run stops waiting."""
        self._events.pop(interrupt_id, None)

    def wake(self, interrupt_id: str) -> bool:
        """Wake the run waiting on this request here; tell whether one was."""
        event = self._events.get(interrupt_id)
        if event is None:
            return False
        event.set()
        return True

    def __contains__(self, interrupt_id: object) -> bool:
        return interrupt_id in self._events


def check_response_schema(schema: Any) -> dict[str, Any] | bool:
    """Return a valid JSON Schema, or raise ValueError (an agent's mistake, not the user's)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"response_schema is not a valid JSON Schema: {exc.message}") from exc
    return schema  # type: ignore[no-any-return]


def check_answer(schema: Any, answer: Any) -> None:
    """Raise InvalidRequest unless `answer` fits the question's schema (any string without one)."""
    if schema is None:
        if not isinstance(answer, str) or not answer.strip():
            raise InvalidRequest("payload.answer must be a non-empty string")
        if len(answer) > settings.WS_MAX_MESSAGE_CHARS:
            raise InvalidRequest(
                f"payload.answer is longer than {settings.WS_MAX_MESSAGE_CHARS} characters"
            )
        return
    error = best_match(Draft202012Validator(schema).iter_errors(answer))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "answer"
        raise InvalidRequest(f"the answer does not match its schema at {where}: {error.message}")


def check_edited_parameters(tool_name: str, parameters: Any) -> dict[str, Any]:
    """Check edited tool parameters as the tool checks its own input; raise InvalidRequest."""
    if not isinstance(parameters, dict):
        raise InvalidRequest("payload.parameters must be a JSON object")
    tool = get_tool(tool_name)
    if tool is None:
        raise InvalidRequest(f"tool {tool_name!r} is not available")
    try:
        tool.check_parameters(parameters)
    except ToolError as exc:
        raise InvalidRequest(f"the edited parameters are not valid: {exc}") from exc
    return parameters


def user_decision(row: InputRequest, resolution: InputResolution) -> InputDecision:
    """Turn a user's resolution into the decision to record, checking it against the request."""
    decision, user = resolution.decision, By.USER
    if decision == "reject":
        message = resolution.message[:MAX_REJECT_MESSAGE_CHARS]
        return InputDecision(Outcome.REJECTED, user, {"message": message} if message else {})
    if row.kind == Kind.TOOL_APPROVAL:
        if decision == "approve":
            return InputDecision(Outcome.APPROVED, user, {})
        if decision == "edit":
            parameters = check_edited_parameters(
                str(row.request.get("tool_name")), resolution.parameters
            )
            return InputDecision(Outcome.EDITED, user, {"parameters": parameters})
        raise InvalidRequest("a tool_approval takes the decision approve, edit or reject")
    if decision == "answer":
        check_answer(row.request.get("response_schema"), resolution.answer)
        return InputDecision(Outcome.ANSWERED, user, {"answer": resolution.answer})
    raise InvalidRequest("a question takes the decision answer or reject")


def resolved_data(interrupt_id: str, kind: str, decision: InputDecision) -> dict[str, Any]:
    """Return the data of an input_resolved event."""
    data: dict[str, Any] = {
        "interrupt_id": interrupt_id,
        "outcome": decision.outcome,
        "by": decision.by,
    }
    if kind == Kind.QUESTION and decision.outcome == Outcome.ANSWERED:
        data["answer"] = decision.response.get("answer")
    return data


class InputAsker:
    """Asks a run's user and waits for the decision; one per run."""

    def __init__(
        self,
        *,
        ref: RunRef,
        emitter: EventEmitter,
        waiters: InputWaiters,
        cancel_outcome: Callable[[], tuple[str, str]],
        timeout_seconds: float | None = None,
    ) -> None:
        self.ref = ref
        self.emitter = emitter
        self.waiters = waiters
        # Which outcome (and decider) a cancel of the run gives a pending request.
        self.cancel_outcome = cancel_outcome
        self.timeout_seconds = (
            settings.AGENT_INPUT_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
        )

    async def approve_tool(
        self, *, tool_name: str, tool_call_id: str, parameters: dict[str, Any]
    ) -> InputDecision:
        """Ask the user to approve (or edit, or reject) a tool call."""
        request = {"tool_name": tool_name, "tool_call_id": tool_call_id, "parameters": parameters}
        return await self._ask(Kind.TOOL_APPROVAL, f"Allow the tool {tool_name}?", request)

    async def ask(self, message: str, *, response_schema: Any = None) -> InputAnswer:
        """Ask the user a question; the answer is checked against `response_schema` if given."""
        if not isinstance(message, str) or not message.strip():
            raise ValueError("a question needs a non-empty message")
        request: dict[str, Any] = {}
        if response_schema is not None:
            request["response_schema"] = check_response_schema(response_schema)
        decision = await self._ask(Kind.QUESTION, message[:MAX_QUESTION_CHARS], request)
        return InputAnswer(
            outcome=decision.outcome,
            answer=decision.response.get("answer"),
            message=str(decision.response.get("message", "")),
        )

    async def _ask(self, kind: str, message: str, request: dict[str, Any]) -> InputDecision:
        interrupt_id = f"in_{uuid.uuid4().hex}"
        expires_at = timezone.now() + timedelta(seconds=self.timeout_seconds)
        data = {
            "interrupt_id": interrupt_id,
            "kind": kind,
            "message": message,
            "expires_at": iso_utc(expires_at),
            **request,
        }
        shown = clean_event_data("input_requested", data)  # raises on a malformed request
        draft = InputDraft(
            interrupt_id=interrupt_id,
            run_id=self.ref.run_id,
            user_id=self.emitter.user_id,
            kind=kind,
            message=message,
            request={key: shown[key] for key in request},
            expires_at=expires_at,
        )
        wake = self.waiters.open(interrupt_id)
        requested = False
        try:
            await database_sync_to_async(input_open)(draft)
            requested = True  # an emit, once begun, completes even if the run is cancelled
            await self.emitter.emit(
                self.ref,
                "input_requested",
                data,
                run_change={"status": Run.Status.WAITING_INPUT},
            )
            INPUTS_REQUESTED.labels(kind).inc()
            decision = await self._wait(interrupt_id, wake, draft)
        except BaseException:
            # Cancelled (stop, newer message, shutdown, run timeout) or failed: the
            # request ends with the run, unless a decision won just before.
            await self._close(interrupt_id, kind, requested)
            raise
        finally:
            self.waiters.close(interrupt_id)
        await self.emitter.emit(
            self.ref,
            "input_resolved",
            resolved_data(interrupt_id, kind, decision),
            run_change={"status": Run.Status.RUNNING, "resumed": True},
        )
        INPUTS_RESOLVED.labels(decision.outcome).inc()
        return decision

    async def _wait(
        self, interrupt_id: str, wake: asyncio.Event, draft: InputDraft
    ) -> InputDecision:
        """Wait until the row is decided; past `expires_at`, decide it expired."""
        expired = InputDecision(Outcome.EXPIRED, By.TIMEOUT, {})
        polled = False
        while True:
            wake.clear()  # before the read: a wake-up after it is not missed
            row = await database_sync_to_async(input_get)(interrupt_id=interrupt_id)
            if row is not None and row.outcome != Outcome.PENDING:
                if polled and row.decided_by == By.USER:
                    INPUT_WAKEUPS.labels("poll").inc()  # its wake-up was lost
                return InputDecision.of(row)
            remaining = (draft.expires_at - timezone.now()).total_seconds()
            if remaining <= 0:
                await database_sync_to_async(input_decide)(
                    interrupt_id=interrupt_id, user_id=draft.user_id, decision=expired
                )
                continue  # read what won: the timeout, or an answer just before it
            try:
                async with asyncio.timeout(min(remaining, POLL_SECONDS)):
                    await wake.wait()
                polled = False
            except TimeoutError:
                polled = True

    async def _close(self, interrupt_id: str, kind: str, requested: bool) -> None:
        outcome, by = self.cancel_outcome()
        try:
            await database_sync_to_async(input_decide)(
                interrupt_id=interrupt_id,
                user_id=self.emitter.user_id,
                decision=InputDecision(outcome, by, {}),
            )
            row = await database_sync_to_async(input_get)(interrupt_id=interrupt_id)
            if requested and row is not None:
                decision = InputDecision.of(row)
                await self.emitter.emit(
                    self.ref, "input_resolved", resolved_data(interrupt_id, kind, decision)
                )
                INPUTS_RESOLVED.labels(decision.outcome).inc()
        except Exception:
            logger.exception(
                "closing an input request failed run_id=%s interrupt_id=%s",
                self.ref.run_id,
                interrupt_id,
                extra={"run_id": self.ref.run_id},
            )


async def orphan_inputs_close(emitter: EventEmitter, ref: RunRef) -> None:
    """End the input requests of a run whose process died: each gets its `input_resolved`.

    Pending ones end `interrupted` (by `shutdown`); one a user decided that its
    dead run never reported is reported with that decision.
    """
    shutdown = InputDecision(Outcome.INTERRUPTED, By.SHUTDOWN, {})
    await database_sync_to_async(inputs_close_for_run)(run_id=ref.run_id, decision=shutdown)
    for row in await database_sync_to_async(inputs_unreported)(run_id=ref.run_id):
        decision = InputDecision.of(row)
        await emitter.emit(ref, "input_resolved", resolved_data(row.pk, row.kind, decision))
        INPUTS_RESOLVED.labels(decision.outcome).inc()
