"""The WebSocket consumer at /ws/agents/: speaks the protocol, holds no business logic."""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agents.errors import ServiceError
from agents.events.frames import encode_frame, iso_utc
from agents.events.replay import FirstPages
from agents.registry import AgentRegistry
from agents.services import ConnectionRequest
from agents.session import UserAgentSession
from realtime import metrics
from realtime.auth import bearer_token
from realtime.closed import SOCKET_GONE
from realtime.connections import ConnectionBook
from realtime.hub import LocalHub
from realtime.protocol import (
    Frame,
    ProtocolError,
    StartRequest,
    decode_frame,
    parse_resolve_input,
    parse_resume,
    parse_start_agent,
    parse_stop_agent,
    parse_user_message,
)
from realtime.stream import SocketStream

logger = logging.getLogger(__name__)

# daphne lets an application close only with 1000 or 3000-4999 (any other code
# makes it fail the socket with 1011), so RFC 6455's codes are mirrored at 4000+.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY_SOCKETS = 4008  # 1008, policy violation: over WS_MAX_CONNECTIONS_PER_USER
CLOSE_MESSAGE_TOO_BIG = 4009  # 1009: a frame over WS_MAX_FRAME_BYTES
CLOSE_RESUME = 4011  # 1011: this socket's stream broke; reconnect and resume
CLOSE_SERVICE_RESTART = 4012  # 1012: the process is stopping; reconnect (elsewhere)
CLOSE_CODES = (
    CLOSE_UNAUTHENTICATED,
    CLOSE_TOO_MANY_SOCKETS,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_RESUME,
    CLOSE_SERVICE_RESTART,
)


def server_time() -> str:
    """Return the current time as ISO-8601 UTC."""
    return iso_utc(datetime.now(UTC))


class AgentConsumer(AsyncWebsocketConsumer):
    """One browser tab or script connected to its user's agent events."""

    user_id: int
    session: UserAgentSession
    # Set once the socket is closing (by us, or found closed on a send): nothing more goes out.
    closing = False
    # No channel-layer channel per socket: events come from the process's hub
    # (one layer subscription per user per process), nothing else is sent here.
    channel_layer = None

    def __init__(
        self,
        *,
        registry: AgentRegistry,
        hub: LocalHub,
        connections: ConnectionBook,
        first_pages: FirstPages,
    ) -> None:
        # The process's parts, handed in through as_asgi() (chatplatform/process.py).
        super().__init__()
        self.registry = registry
        self.hub = hub
        self.connections = connections
        self.first_pages = first_pages

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the socket: each ASGI message read and dispatched in turn.

        Channels' own __call__ reads the socket and the consumer's channel-layer
        channel side by side, each receive a task of its own under asyncio.wait
        (await_many_dispatch): 3.4 kB held by every idle socket (bench/socket_memory.py). This
        consumer has no channel (events come from the hub), so it reads the one
        source directly; messages are still handled one at a time, in order.
        """
        self.scope = scope
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Hand an ASGI message to its handler, without a thread hop first.

        Channels' own dispatch first closes stale database connections on the
        database thread: a thread hop (about 0.3 ms here) for every frame
        received, before the frame is even read. Every database call made here
        goes through database_sync_to_async, which does that around each call
        already, so this consumer skips the extra hop.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        """Authenticate, join the user's group and announce the connection."""
        user = self.scope.get("user")
        self.joined = False
        self.closing = False
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        registry, hub, connections = self.registry, self.hub, self.connections
        if registry.draining:
            # This process is stopping: the client reconnects (elsewhere) and resumes.
            await self.accept()
            await self.close(code=CLOSE_SERVICE_RESTART)
            return
        self.user_id = int(user.pk)
        self.connection_id = uuid.uuid4().hex
        self.session = await registry.get_user_session(self.user_id)
        self.stream = SocketStream(
            user_id=self.user_id,
            send=self._send_text,
            on_failure=self._stream_failed,
            first_page=self.first_pages,
        )
        # Attach before reading last_seq (in connections_open), so every later event
        # reaches this socket live (held until the stream starts).
        try:
            await hub.attach(self.stream)
            last_seq = await connections.open(
                ConnectionRequest(
                    connection_id=self.connection_id,
                    user_id=self.user_id,
                    session_id=self.session.session_id,
                    auth="token" if bearer_token(self.scope) is not None else "cookie",
                    max_connections=settings.WS_MAX_CONNECTIONS_PER_USER,
                )
            )
        except ServiceError as refused:
            await self._refuse(refused)
            return
        except Exception:
            logger.exception(
                "connecting a socket failed user_id=%s", self.user_id, extra=self._log_context()
            )
            await self._refuse(None)
            return
        self.joined = True
        self.session.attach()
        metrics.CONNECTIONS_OPENED.inc()
        metrics.CONNECTIONS_OPEN.inc()
        await self.accept()
        logger.info(
            "socket connected user_id=%s connection_id=%s",
            self.user_id,
            self.connection_id,
            extra=self._log_context(),
        )
        await self.send_frame(
            {
                "type": "connection_established",
                "connection_id": self.connection_id,
                "user_id": str(self.user_id),
                "last_seq": last_seq,
                "server_time": server_time(),
            }
        )
        # This socket's stream is gapless and increasing from here.
        await self.stream.start(last_seq + 1)

    async def _refuse(self, refused: ServiceError | None) -> None:
        """Turn the socket away after it was attached: over a limit, or a failure."""
        self.stream.close()
        try:
            await self.hub.detach(self.stream)
        except Exception:
            logger.exception("detaching a refused socket failed", extra=self._log_context())
        await self.accept()
        if refused is None:
            await self.close(code=CLOSE_RESUME)
            return
        await self.send_error(None, refused.code, refused.message)
        await self.close(code=CLOSE_TOO_MANY_SOCKETS)

    def _log_context(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "connection_id": self.connection_id}

    async def disconnect(self, code: int) -> None:
        """Leave the user's group; the user's runs go on."""
        if not getattr(self, "joined", False):
            return
        self.joined = False
        self.stream.close()
        try:
            await self.hub.detach(self.stream)
        finally:
            self.session.detach()
            metrics.CONNECTIONS_OPEN.dec()
            logger.info(
                "socket closed user_id=%s connection_id=%s code=%s",
                self.user_id,
                self.connection_id,
                code,
                extra=self._log_context(),
            )
            await self.connections.close(self.connection_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Decode one client frame and dispatch it; bad frames get an error reply."""
        if not getattr(self, "joined", False) or self.closing:
            return
        if text_data is None:
            size = len(bytes_data or b"")
        else:
            # A str of n characters is at most 4n bytes of UTF-8: skip encoding small ones.
            size = (
                len(text_data)
                if len(text_data) * 4 <= settings.WS_MAX_FRAME_BYTES
                else len(text_data.encode())
            )
        if size > settings.WS_MAX_FRAME_BYTES:
            metrics.FRAMES_TOO_LARGE.inc()
            await self.send_error(
                None,
                "message_too_large",
                f"frame larger than {settings.WS_MAX_FRAME_BYTES} bytes; closing",
            )
            await self._close(CLOSE_MESSAGE_TOO_BIG)
            return
        request_id = None
        try:
            if text_data is None:
                raise ProtocolError("invalid_message", "binary frames are not supported")
            frame = decode_frame(text_data)
            request_id = frame.request_id
            await self.handlers[frame.type](self, frame)
        except ProtocolError as exc:
            await self.send_error(request_id or exc.request_id, exc.code, exc.message)
        except ServiceError as exc:
            await self.send_error(request_id, exc.code, exc.message, **exc.extra)
        except Exception as exc:
            # Not the client's fault (storage down, a bug): say so in the log, and
            # close so that the client reconnects and resumes rather than waits.
            logger.exception(
                "handling a frame failed user_id=%s", self.user_id, extra=self._log_context()
            )
            self.stream.fail(exc)

    async def handle_start_agent(self, frame: Frame) -> None:
        """Start a run of the named agent."""
        await self._start(frame, parse_start_agent(frame.payload, default_agent=_default()))

    async def handle_user_message(self, frame: Frame) -> None:
        """Start a run of the default agent."""
        await self._start(frame, parse_user_message(frame.payload, default_agent=_default()))

    async def _start(self, frame: Frame, request: StartRequest) -> None:
        # The run's events wait until run_accepted is sent (docs/protocol.md).
        async with self.stream.paused():
            await self._start_run(frame, request)

    async def _start_run(self, frame: Frame, request: StartRequest) -> None:
        ref = await self.session.start_run(
            agent_name=request.agent,
            message=request.message,
            thread_id=request.thread_id,
            options=request.options,
            on_busy=request.on_busy,
            request_id=frame.request_id or "",
        )
        await self.send_frame(
            {
                "type": "run_accepted",
                "request_id": frame.request_id,
                "run_id": ref.run_id,
                "thread_id": ref.thread_id,
            }
        )

    async def handle_stop_agent(self, frame: Frame) -> None:
        """Cancel one of the user's runs."""
        await self.session.cancel_run(parse_stop_agent(frame.payload))

    async def handle_resume(self, frame: Frame) -> None:
        """Send every stored event after the client's cursor, then resume_complete."""

        async def complete(last: int, recovered: bool) -> None:
            await self.send_frame(
                {
                    "type": "resume_complete",
                    "request_id": frame.request_id,
                    "last_seq": last,
                    "recovered": recovered,
                }
            )

        count = await self.stream.resume(parse_resume(frame.payload), complete)
        metrics.REPLAYS.inc()
        metrics.REPLAYED_EVENTS.inc(count)

    async def handle_resolve_input(self, frame: Frame) -> None:
        """Decide one of the user's input requests; its run goes on wherever it runs."""
        decided = await self.session.resolve_input(
            parse_resolve_input(frame.payload), connection_id=self.connection_id
        )
        # Sent before the run is woken, so it comes before the input_resolved event.
        await self.send_frame(
            {
                "type": "input_accepted",
                "request_id": frame.request_id,
                "interrupt_id": decided.interrupt_id,
            }
        )
        await self.session.wake_input(decided)

    async def handle_ping(self, frame: Frame) -> None:
        """Answer a ping."""
        await self.send_frame(
            {"type": "pong", "request_id": frame.request_id, "server_time": server_time()}
        )

    handlers: dict[str, Callable[["AgentConsumer", Frame], Awaitable[None]]] = {
        "start_agent": handle_start_agent,
        "user_message": handle_user_message,
        "stop_agent": handle_stop_agent,
        "resume": handle_resume,
        "resolve_input": handle_resolve_input,
        "ping": handle_ping,
    }

    async def _send_text(self, text: str) -> None:
        """Send one text frame; a socket that is already closing just stops taking them."""
        if self.closing:
            return
        try:
            await self.base_send({"type": "websocket.send", "text": text})
        except SOCKET_GONE as exc:
            # The client left while this frame was on its way: not an error.
            metrics.SENDS_AFTER_CLOSE.inc()
            logger.debug(
                "socket already closing, frame dropped user_id=%s: %r",
                getattr(self, "user_id", None),
                exc,
            )
            self.closing = True
            if hasattr(self, "stream"):
                self.stream.close()

    def _stream_failed(self, exc: BaseException) -> None:
        # The stream can no longer be kept gapless here: the client reconnects and resumes.
        self._closing_task = asyncio.get_running_loop().create_task(self._close(CLOSE_RESUME))

    async def _close(self, code: int) -> None:
        """Close the socket with `code`, sending nothing after."""
        if self.closing:
            return
        self.closing = True
        self.stream.close()
        try:
            await self.close(code=code)
        except SOCKET_GONE:
            metrics.SENDS_AFTER_CLOSE.inc()

    async def send_frame(self, payload: dict[str, Any]) -> None:
        """Send one JSON frame."""
        await self._send_text(encode_frame(payload))

    async def send_error(
        self, request_id: str | None, code: str, message: str, **extra: Any
    ) -> None:
        """Send an error frame; the connection stays open."""
        metrics.PROTOCOL_ERRORS.labels(code).inc()
        await self.send_frame(
            {
                "type": "error",
                "request_id": request_id,
                "error": {"code": code, "message": message, **extra},
            }
        )


def _default() -> str:
    return str(settings.AGENT_DEFAULT)
