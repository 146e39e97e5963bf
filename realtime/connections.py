"""ConnectionBook: sockets opened and closed at once are recorded in shared round trips."""

from agents.batching import Batcher
from agents.services import ConnectionRequest, connections_close, connections_open


class ConnectionBook:
    """Records this process's sockets: limit checked and last seq read on open, close noted."""

    def __init__(self) -> None:
        self._opener: Batcher[ConnectionRequest, int] = Batcher(connections_open)
        self._closer: Batcher[str, None] = Batcher(connections_close)

    async def open(self, request: ConnectionRequest) -> int:
        """Record a new socket (ServiceError past the per-user limit); return the last seq."""
        return await self._opener.submit(request)

    async def close(self, connection_id: str) -> None:
        """Record that a socket closed."""
        await self._closer.submit(connection_id)
