"""AG-UI over HTTP: POST /agui/ runs an agent, GET /agui/threads/<id>/events follows a thread.

Both stream Server-Sent Events made from the user's stored events by
`realtime/agui/mapping.py`, each with `id: <seq>`. Both follow the user's events
through a `SocketStream` attached to the process's hub, exactly as a WebSocket
does: gapless and in seq order, replayed from the database where needed, live
from this process or any other. Plain ASGI applications (not Django views), so
that they hold the process's registry and hub, and notice the client leaving.
"""

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

from ag_ui.core import RunAgentInput
from channels.db import database_sync_to_async
from django.conf import settings
from pydantic import ValidationError

from agents.errors import ServiceError
from agents.events.reads import user_last_seq
from agents.events.replay import envelope_of
from agents.models import RunEvent
from agents.registry import AgentRegistry
from agents.runtime.inputs import InputResolution
from agents.selectors import thread_for_user
from agents.session import UserAgentSession
from realtime.agui.mapping import Translator, sse
from realtime.hub import LocalHub
from realtime.stream import SocketStream

logger = logging.getLogger(__name__)

ERROR_STATUS = {
    "invalid_message": 422,
    "unknown_agent": 422,
    "not_found": 404,
    "thread_busy": 409,
    "already_resolved": 409,
    "rate_limited": 429,
    "too_many_runs": 429,
    "message_too_large": 413,
}
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]
PRIME_LIMIT = 2000


class ClientGone(Exception):
    """The client went away before its request was read whole."""


class HttpError(Exception):
    """A request answered with a JSON error instead of a stream."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"code": code, "message": message, **extra}}


async def respond_json(send: Any, status: int, body: dict[str, Any], **headers: str) -> None:
    """Send a whole JSON response."""
    payload = json.dumps(body).encode()
    extra = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *extra],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """Return a request header's value, if sent."""
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin1"))
    return None


def allowed_origin(scope: dict[str, Any]) -> bool:
    """Requests from browsers on other sites are refused (scripts send no Origin)."""
    origin = header(scope, b"origin")
    if origin is None:
        return True
    host = urlparse(origin).hostname or ""
    return any(pattern in ("*", host) for pattern in settings.ALLOWED_HOSTS)


def user_of(scope: dict[str, Any]) -> int:
    """Return the signed-in user's id (cookie session or bearer token), or refuse with 401."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        raise HttpError(401, "unauthenticated", "sign in, or send Authorization: Bearer <token>")
    return int(user.pk)


def service_error(exc: ServiceError) -> HttpError:
    """The HTTP answer to a refused request, with the WebSocket protocol's error code."""
    extra = dict(exc.extra)
    return HttpError(ERROR_STATUS.get(exc.code, 400), exc.code, exc.message, **extra)


async def read_body(receive: Any, limit: int) -> bytes:
    """Read the request body, refusing one over `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "message_too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class Follower:
    """Writes the user's events that `wanted` selects to an SSE response, as AG-UI events."""

    def __init__(
        self,
        *,
        user_id: int,
        send: Any,
        wanted: Callable[[dict[str, Any]], bool],
        translator: Translator,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self._send = send
        self.wanted = wanted
        self.translator = translator
        self.until = until
        self.done = asyncio.Event()
        self.start_after = 0  # the user's latest seq when the live stream began
        self.stream = SocketStream(user_id=user_id, send=self._on_frame, on_failure=self._failed)

    async def body(self, text: str) -> None:
        """Send part of the response."""
        await self._send({"type": "http.response.body", "body": text.encode(), "more_body": True})

    async def _on_frame(self, text: str) -> None:
        envelope = json.loads(text)
        if self.done.is_set() or not self.wanted(envelope):
            return
        events = self.translator.translate(envelope)
        if events:
            # The AG-UI events of one of ours go out together, in one write.
            await self.body(sse(envelope["seq"], events))
        if self.until is not None and self.until(envelope):
            self.done.set()

    def _failed(self, exc: BaseException) -> None:
        # The stream cannot stay gapless here: end it; the client resumes by Last-Event-ID.
        logger.warning("an AG-UI stream ended early: %r", exc)
        self.done.set()


class AguiEndpoint:
    """What both endpoints share: auth, errors, the stream's lifetime and its heartbeat."""

    def __init__(self, *, registry: AgentRegistry, hub: LocalHub) -> None:
        self.registry = registry
        self.hub = hub

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one request; a client that goes away ends its stream at once."""
        try:
            if self.registry.draining:
                # As a socket gets 4012: this process is stopping; another will answer.
                raise HttpError(
                    503, "service_restarting", "the server is restarting; retry", retry_after=1
                )
            follower = await self.open(scope, receive, send)
        except HttpError as refused:
            await respond_json(send, refused.status, refused.body, **self._retry(refused))
            return
        except ClientGone:
            return
        try:
            await self._serve(follower, receive)
        finally:
            follower.stream.close()
            try:
                await self.hub.detach(follower.stream)
            except Exception as exc:
                # The layer is down; the stream is closed and takes nothing more.
                logger.warning("an AG-UI stream could not leave its user's group: %r", exc)
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def open(self, scope: dict[str, Any], receive: Any, send: Any) -> Follower:
        """Check the request, start the response and return the follower that feeds it."""
        raise NotImplementedError

    async def _serve(self, follower: Follower, receive: Any) -> None:
        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(settings.AGUI_HEARTBEAT_SECONDS)
                await follower.body(": keep-alive\n\n")

        waits = [
            asyncio.ensure_future(follower.done.wait()),
            asyncio.ensure_future(client_gone()),
            asyncio.ensure_future(heartbeat()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    @staticmethod
    def _retry(refused: HttpError) -> dict[str, str]:
        retry_after = refused.body["error"].get("retry_after")
        return {"retry_after": str(max(1, round(retry_after)))} if retry_after else {}

    async def _follow(self, follower: Follower) -> None:
        """Route the user's events to the follower; 503 (nothing started) if that fails."""
        try:
            await self.hub.attach(follower.stream)
        except Exception as exc:
            # The channel layer is down (Redis): nothing could be followed live.
            logger.warning("an AG-UI stream could not follow its user's events: %r", exc)
            follower.stream.close()
            with contextlib.suppress(Exception):
                await self.hub.detach(follower.stream)
            raise HttpError(
                503, "unavailable", "live events are unavailable right now; retry", retry_after=1
            ) from exc


class AguiRun(AguiEndpoint):
    """POST /agui/: run an agent (or answer its interrupt) and stream the run as AG-UI events."""

    async def open(self, scope: dict[str, Any], receive: Any, send: Any) -> Follower:
        """Start the run, or resume it, and the SSE response that follows it."""
        if scope["method"] != "POST":
            raise HttpError(405, "method_not_allowed", "POST a RunAgentInput here")
        if not allowed_origin(scope):
            raise HttpError(403, "forbidden_origin", "requests from this origin are not allowed")
        if not (header(scope, b"content-type") or "").startswith("application/json"):
            raise HttpError(415, "unsupported_media_type", "send the RunAgentInput as JSON")
        user_id = user_of(scope)
        body = await read_body(receive, settings.AGUI_MAX_BODY_BYTES)
        run_input = parse_input(body)
        session = await self.registry.get_user_session(user_id)
        run_ids: list[str] = []
        follower = Follower(
            user_id=user_id,
            send=send,
            wanted=lambda e: e["run_id"] in run_ids,
            translator=Translator(),
            until=lambda e: e["type"] in STOPS,
        )
        await self._follow(follower)
        try:
            # Live from after the user's latest event: the run's are all after it.
            follower.start_after = await database_sync_to_async(user_last_seq)(user_id=user_id)
            await follower.stream.start(follower.start_after + 1)
            # The run's events wait until the response has begun (and know their run).
            async with follower.stream.paused():
                if run_input.resume:
                    await self._resume(session, run_input, run_ids, follower)
                else:
                    run_ids.append(await self._start(session, run_input))
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        except BaseException as exc:
            # Refused or failed before the stream began: stop following, nothing was sent.
            follower.stream.close()
            await self.hub.detach(follower.stream)
            if isinstance(exc, ServiceError):
                raise service_error(exc) from exc
            raise
        return follower

    @staticmethod
    async def _start(session: UserAgentSession, run_input: RunAgentInput) -> str:
        props = run_input.forwarded_props if isinstance(run_input.forwarded_props, dict) else {}
        agent = props.get("agent") or settings.AGENT_DEFAULT
        options = props.get("options") or {}
        if not isinstance(agent, str) or not isinstance(options, dict):
            raise HttpError(
                422,
                "invalid_message",
                "forwardedProps.agent must be a string and forwardedProps.options an object",
                fields=["forwardedProps"],
            )
        ref = await session.start_run(
            agent_name=agent,
            message=last_user_text(run_input),
            thread_id=thread_uuid(run_input.thread_id),
            options=options,
            request_id=run_input.run_id[:128],
            create_thread=True,
        )
        return ref.run_id

    async def _resume(
        self,
        session: UserAgentSession,
        run_input: RunAgentInput,
        run_ids: list[str],
        follower: Follower,
    ) -> None:
        for entry in run_input.resume or []:
            decided = await session.resolve_input(resolution_of(entry))
            run_ids.append(decided.run_id)
            # What the client saw of the run before its interrupt shapes what follows:
            # its events up to where this stream starts (the rest come through it).
            follower.translator.prime(
                await run_envelopes(decided.run_id, through_seq=follower.start_after)
            )
            await session.wake_input(decided)


class AguiThread(AguiEndpoint):
    """GET /agui/threads/<id>/events: a thread's events after a seq, then live, as AG-UI."""

    async def open(self, scope: dict[str, Any], receive: Any, send: Any) -> Follower:
        """Check the thread is the user's, then replay after the cursor and follow."""
        if scope["method"] != "GET":
            raise HttpError(405, "method_not_allowed", "GET this URL")
        if not allowed_origin(scope):
            raise HttpError(403, "forbidden_origin", "requests from this origin are not allowed")
        user_id = user_of(scope)
        thread_id = str(scope["url_route"]["kwargs"]["thread_id"])
        thread = await database_sync_to_async(thread_for_user)(user_id=user_id, thread_id=thread_id)
        if thread is None:
            raise HttpError(404, "not_found", "no such thread")
        after = cursor_of(scope)
        translator = Translator()
        translator.prime(await thread_envelopes(str(thread.pk), through_seq=after))
        follower = Follower(
            user_id=user_id,
            send=send,
            wanted=lambda e: e["thread_id"] == str(thread.pk),
            translator=translator,
        )
        await self._follow(follower)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        try:
            await follower.stream.resume(after, _replayed)
        except BaseException:
            follower.stream.close()
            await self.hub.detach(follower.stream)
            raise
        return follower


STOPS = frozenset({"agent_completed", "agent_error", "agent_cancelled", "input_requested"})


async def _replayed(last: int, recovered: bool) -> None:
    """Nothing to say when the replay is over: the live events simply follow."""


def parse_input(body: bytes) -> RunAgentInput:
    """Read a RunAgentInput; 422 naming the fields that are wrong."""
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise HttpError(422, "invalid_json", f"the body is not JSON: {exc}") from exc
    try:
        return RunAgentInput.model_validate(raw)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in error["loc"]), "message": error["msg"]}
            for error in exc.errors()[:20]
        ]
        names = ", ".join(sorted({f["field"] for f in fields})) or "the input"
        raise HttpError(
            422, "invalid_message", f"not a valid RunAgentInput: {names}", fields=fields
        ) from exc


def last_user_text(run_input: RunAgentInput) -> str:
    """Return the text of the last user message: the run's message."""
    for message in reversed(run_input.messages):
        if getattr(message, "role", None) != "user":
            continue
        content = message.content
        if isinstance(content, str):
            return content
        text = "".join(getattr(part, "text", "") or "" for part in content or [])
        if text:
            return text
    raise HttpError(
        422,
        "invalid_message",
        "messages needs a user message: it is the run's message",
        fields=["messages"],
    )


def thread_uuid(thread_id: str) -> str:
    """AG-UI thread ids here are UUIDs (clients make one per new conversation)."""
    try:
        return str(uuid.UUID(thread_id))
    except ValueError as exc:
        raise HttpError(
            422, "invalid_message", "threadId must be a UUID", fields=["threadId"]
        ) from exc


def resolution_of(entry: Any) -> InputResolution:
    """Turn an AG-UI resume entry into a decision on one of our input requests.

    `cancelled` rejects. A `resolved` payload may be our own decision object
    (`{"decision": "approve" | "reject" | "edit" | "answer", ...}`), `true` or
    `false` (or `{"approved": bool}`) for a tool approval, or any other value:
    the answer to a question.
    """
    payload = entry.payload
    if entry.status == "cancelled":
        return InputResolution(interrupt_id=entry.interrupt_id, decision="reject")
    if isinstance(payload, dict) and isinstance(payload.get("decision"), str):
        return InputResolution(
            interrupt_id=entry.interrupt_id,
            decision=payload["decision"],
            message=str(payload.get("message") or ""),
            parameters=payload.get("parameters"),
            answer=payload.get("answer"),
        )
    if isinstance(payload, dict) and isinstance(payload.get("approved"), bool):
        payload = payload["approved"]
    if isinstance(payload, bool):
        decision = "approve" if payload else "reject"
        return InputResolution(interrupt_id=entry.interrupt_id, decision=decision)
    return InputResolution(interrupt_id=entry.interrupt_id, decision="answer", answer=payload)


def cursor_of(scope: dict[str, Any]) -> int:
    """The seq to follow after: Last-Event-ID, else ?after=, else 0."""
    raw = header(scope, b"last-event-id")
    if raw is None:
        query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        raw = (query.get("after") or ["0"])[0]
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise HttpError(422, "invalid_message", "Last-Event-ID (or after) must be a seq >= 0")
    return value


def _envelopes(rows: Any) -> list[dict[str, Any]]:
    return [envelope_of(e) for e in rows]


@database_sync_to_async
def thread_envelopes(thread_id: str, *, through_seq: int) -> list[dict[str, Any]]:
    """The thread's events up to a seq (the latest PRIME_LIMIT), to prime a translator."""
    rows = (
        RunEvent.objects.filter(run__thread_id=thread_id, seq__lte=through_seq)
        .select_related("run__agent")
        .order_by("-seq")[:PRIME_LIMIT]
    )
    return _envelopes(reversed(list(rows)))


@database_sync_to_async
def run_envelopes(run_id: str, *, through_seq: int) -> list[dict[str, Any]]:
    """A run's events up to a seq, to prime a translator."""
    rows = (
        RunEvent.objects.filter(run_id=run_id, seq__lte=through_seq)
        .select_related("run__agent")
        .order_by("seq")
    )
    return _envelopes(rows)
