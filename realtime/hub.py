"""LocalHub: this process's fan-out of each user's events to the user's sockets here.

A process holds one channel-layer subscription per user with sockets here, not
one per socket: an event costs one layer message per process, and the hub hands
the same encoded frame to each of the user's local sockets. Events stored by
this process reach its own sockets directly; with a layer shared between
processes (Redis) they are also published for the others, and the copy that
comes back is dropped. With the in-memory layer (one process) the hub does not
use the layer for events at all.
"""

import asyncio
import logging
import uuid
from typing import Any

from channels.layers import BaseChannelLayer, InMemoryChannelLayer

from agents.events.writer import StoredEvent
from realtime.groups import EVENT_MESSAGE_TYPE, user_group
from realtime.inbox import ProcessInbox
from realtime.outbox import RemoteOutbox
from realtime.stream import SocketStream

logger = logging.getLogger(__name__)


class LocalHub:
    """Routes each user's events to that user's sockets in this process."""

    def __init__(self, *, channel_layer: BaseChannelLayer, inbox: ProcessInbox) -> None:
        if channel_layer is None:
            # Without a layer no event would reach a socket: fail loudly instead.
            raise ValueError("the hub needs a channel layer (CHANNEL_LAYERS['default'])")
        self.layer = channel_layer
        self._inbox = inbox
        inbox.on(EVENT_MESSAGE_TYPE, self._on_events)
        self.origin = uuid.uuid4().hex
        self._streams: dict[int, set[SocketStream]] = {}
        self._subscribed: set[int] = set()
        # Subscription changes go one at a time: a user's add and discard never cross.
        self._subscribing = asyncio.Lock()
        self._outbox = RemoteOutbox(channel_layer)

    @property
    def shared(self) -> bool:
        """Tell whether the layer reaches other processes (anything but the in-memory one)."""
        return not isinstance(self.layer, InMemoryChannelLayer)

    async def attach(self, stream: SocketStream) -> None:
        """Route the user's events to this socket; subscribed when this returns."""
        self._streams.setdefault(stream.user_id, set()).add(stream)
        await self._sync_subscription(stream.user_id)

    async def detach(self, stream: SocketStream) -> None:
        """Stop routing to this socket; unsubscribe the user when it was the last one here."""
        streams = self._streams.get(stream.user_id)
        if streams is not None:
            streams.discard(stream)
        await self._sync_subscription(stream.user_id)

    def users(self) -> list[int]:
        """Return the users with sockets in this process."""
        return sorted(self._streams)

    def streams_of(self, user_id: int) -> tuple[SocketStream, ...]:
        """Return the streams of the user's sockets this hub routes events to."""
        return tuple(self._streams.get(user_id, ()))

    async def publish(self, events: list[StoredEvent]) -> None:
        """Send stored events to their users' sockets here and, if shared, to other processes.

        Events are handed out here in the order given, before this returns;
        other processes get one layer message per user carrying that user's
        events in order, queued in the outbox (outbox.py), which sends them in
        order without the writer waiting for Redis.
        """
        for event in events:
            await self._fan_out(event.user_id, event.seq, event.text, event.called_at)
        if not self.shared or not events:
            return
        per_user: dict[int, list[tuple[int, str, float]]] = {}
        for event in events:
            per_user.setdefault(event.user_id, []).append((event.seq, event.text, event.called_at))
        messages = [
            (
                user_group(user_id),
                {
                    "type": EVENT_MESSAGE_TYPE,
                    "user_id": user_id,
                    "events": items,
                    "origin": self.origin,
                },
            )
            for user_id, items in per_user.items()
        ]
        await self._outbox.put(messages, len(events))

    async def drain(self) -> None:
        """Wait until the events published so far are sent to the other processes."""
        await self._outbox.drain()

    async def _fan_out(self, user_id: int, seq: int, text: str, called_at: float | None) -> None:
        for stream in tuple(self._streams.get(user_id, ())):
            try:
                await stream.offer(seq, text, called_at)
            except Exception as exc:
                # This socket can no longer be trusted to be gapless: close it so
                # that its client resumes, rather than leave it silent.
                logger.exception("sending seq=%s to a socket failed user_id=%s", seq, user_id)
                stream.fail(exc)

    async def _sync_subscription(self, user_id: int) -> None:
        """Make the layer subscription of the user match whether it has sockets here."""
        if not self.shared:
            if not self._streams.get(user_id):
                self._streams.pop(user_id, None)
            return
        async with self._subscribing:
            wanted = bool(self._streams.get(user_id))
            if wanted and user_id not in self._subscribed:
                await self._inbox.join(user_group(user_id))
                self._subscribed.add(user_id)
            elif not wanted and user_id in self._subscribed:
                self._subscribed.discard(user_id)
                await self._inbox.leave(user_group(user_id))
            # A socket of the user may have attached while we left its group (its
            # own sync waits for the lock and joins again): keep its entry then.
            if not self._streams.get(user_id):
                self._streams.pop(user_id, None)

    async def _on_events(self, message: dict[str, Any]) -> None:
        """Hand the events another process published to the user's sockets here."""
        if message.get("origin") == self.origin:
            return  # our own, already handed out by publish
        user_id = int(message["user_id"])
        for seq, text, called_at in message["events"]:
            await self._fan_out(user_id, int(seq), text, called_at)
