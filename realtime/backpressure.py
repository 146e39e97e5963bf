"""Dropping sockets whose client stops reading, before their buffer grows without bound.

daphne hands each frame to Twisted, which buffers whatever the peer does not
read yet, out of the ASGI application's sight. This guard wraps daphne's
WebSocket send and aborts the connection once the transport holds more than
WS_MAX_OUTBOUND_BYTES unsent; the client reconnects and resumes, losing nothing.
"""

import logging
from typing import Any

from realtime.metrics import SLOW_CLIENTS_DROPPED
from realtime.patching import Method, replace_once

logger = logging.getLogger(__name__)


def pending_bytes(transport: Any) -> int:
    """Return how many bytes a Twisted transport holds that the peer has not taken."""
    try:
        buffered = len(transport.dataBuffer) - transport.offset
        return int(buffered + transport._tempDataLen)
    except AttributeError:  # not a FileDescriptor transport (e.g. TLS): nothing to read
        return 0


def install(limit_bytes: int) -> bool:
    """Wrap daphne's WebSocket protocol; tell whether daphne was there to wrap."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return False

    def guarded(original: Method) -> Method:
        def handle_reply(self: Any, message: dict[str, Any]) -> None:
            original(self, message)
            if message.get("type") != "websocket.send" or self.state != self.STATE_OPEN:
                return
            pending = pending_bytes(self.transport)
            if pending > limit_bytes:
                SLOW_CLIENTS_DROPPED.inc()
                logger.warning(
                    "dropping a socket that stopped reading: %s bytes unsent (limit %s) client=%s",
                    pending,
                    limit_bytes,
                    self.client_addr,
                )
                self.dropConnection(abort=True)

        return handle_reply

    replace_once(WebSocketProtocol, "handle_reply", guarded)
    return True
