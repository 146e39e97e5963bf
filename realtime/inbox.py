"""ProcessInbox: this process's one channel on the channel layer.

It joins the groups this process listens to (each user with sockets here, and
the process's own control group), reads the channel for as long as the process
lives, retrying while the layer is down, and hands each message to the handler
registered for its type: the hub for events, the lifecycle for control messages.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import BaseChannelLayer

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
Handler = Callable[[dict[str, Any]], Awaitable[None]]


class ProcessInbox:
    """Reads this process's layer channel and dispatches messages by type."""

    def __init__(self, *, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self._handlers: dict[str, Handler] = {}
        self._channel: str | None = None
        self._reader: asyncio.Task[None] | None = None
        # Two first joins at once (the hub's and the lifecycle's) must share one channel.
        self._naming = asyncio.Lock()

    def on(self, message_type: str, handler: Handler) -> None:
        """Hand every message of `message_type` to `handler`."""
        self._handlers[message_type] = handler

    async def join(self, group: str) -> None:
        """Receive the group's messages here."""
        await self.layer.group_add(group, await self._name())

    async def leave(self, group: str) -> None:
        """Stop receiving the group's messages (nothing to do once the inbox is closed)."""
        # Never open a channel just to leave: the group was joined with this one.
        if self._channel is not None and self._reader is not None:
            await self.layer.group_discard(group, self._channel)

    async def close(self) -> None:
        """Stop reading."""
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None

    async def _name(self) -> str:
        loop = asyncio.get_running_loop()
        async with self._naming:
            if self._reader is None or self._reader.done() or self._reader.get_loop() is not loop:
                self._channel = await self.layer.new_channel(prefix="process.")
                self._reader = loop.create_task(self._read(self._channel), name="process-inbox")
        assert self._channel is not None
        return self._channel

    async def _read(self, channel: str) -> None:
        while True:
            try:
                message: dict[str, Any] = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading the channel layer failed; retrying")
                await asyncio.sleep(RETRY_SECONDS)
                continue
            handler = self._handlers.get(str(message.get("type")))
            if handler is None:
                logger.warning("no handler for a %r message; dropped", message.get("type"))
                continue
            try:
                await handler(message)
            except Exception:
                logger.exception("handling a %r message failed", message.get("type"))
