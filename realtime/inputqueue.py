"""A lighter queue for what daphne hands each WebSocket's application.

daphne makes an `asyncio.Queue` per connection for the ASGI messages it receives
(`receive=queue.get`, `queue.put_nowait(message)`). An empty asyncio.Queue holds
three deques and an Event with a fourth, each deque a 64-slot block: about
3.3 kB that every idle socket keeps (bench/socket_memory.py). `InputQueue`
does the same two things, with the same wake-up order and cancellation
handling, in a few hundred bytes. `install` makes daphne use it for WebSocket
connections (HTTP requests keep daphne's own); tests/realtime/test_inputqueue.py
holds it to asyncio.Queue's behaviour, and tests/realtime/test_adapters.py
fails when daphne's method it replaces changes.
"""

import asyncio
import contextlib
from functools import partial
from typing import Any

from realtime.patching import Method, replace_once


class InputQueue:
    """An unbounded FIFO with put_nowait() and get(), like asyncio.Queue's."""

    __slots__ = ("_getters", "_items", "_loop")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def __bool__(self) -> bool:
        """Stay true when empty, as an asyncio.Queue is (daphne tests it with `if queue:`)."""
        return True

    def put_nowait(self, item: Any) -> None:
        """Add a message and wake the longest-waiting reader."""
        self._items.append(item)
        self._wake_next()

    def _wake_next(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return

    async def get(self) -> Any:
        """Return the oldest message, waiting for one if there is none."""
        while not self._items:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            getter = self._loop.create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                # Woken, then cancelled before it read: pass the wake-up on.
                if self._items and not getter.cancelled():
                    self._wake_next()
                raise
        # A socket's queue holds a message or two: popping the front of a list is cheap.
        return self._items.pop(0)


def create_application(server: Any, protocol: Any, scope: dict[str, Any]) -> Any:
    """Start a socket's application as daphne 4.2's create_application does; an InputQueue."""
    assert "application_instance" not in server.connections[protocol]
    input_queue = InputQueue()
    scope.setdefault("asgi", {"version": "3.0"})
    application_instance = server.application(
        scope=scope, receive=input_queue.get, send=partial(server.handle_reply, protocol)
    )
    if protocol not in server.connections:
        return None
    server.connections[protocol]["application_instance"] = asyncio.ensure_future(
        application_instance, loop=asyncio.get_event_loop()
    )
    return input_queue


def install() -> bool:
    """Make daphne queue WebSocket messages in an InputQueue; tell whether daphne was there."""
    try:
        from daphne.server import Server
    except ImportError:
        return False

    def for_websockets(original: Method) -> Method:
        def create(self: Any, protocol: Any, scope: dict[str, Any]) -> Any:
            if scope.get("type") == "websocket":
                return create_application(self, protocol, scope)
            return original(self, protocol, scope)

        return create

    replace_once(Server, "create_application", for_websockets)
    return True
