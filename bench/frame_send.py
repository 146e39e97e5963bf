"""CPU per text frame sent: daphne's serverSend through autobahn, against realtime/textframes.py.

Usage: python bench/frame_send.py [--frames 200000]
Prints the best of 5 timings per frame, on an open autobahn server socket after a
real handshake, with the socket options daphne sets by default, a transport
that drops what it is given (the send itself is the same either way), and
autobahn's debug helpers swapped as under daphne (realtime/autobahn_logging.py).
RESULTS.md is left as it is.
"""

import argparse
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import daphne.server  # noqa: F401  (first: it installs the asyncio reactor, as under daphne)
from autobahn.twisted.websocket import WebSocketServerFactory
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet.testing import StringTransport

from realtime import autobahn_logging, textframes
from tests.realtime.test_textframes import HANDSHAKE, daphne_defaults

FRAME = (
    '{"type":"token","seq":12345,"run_id":"8c5e0f3a-6f7b-4d8e-9a41-3b2f1e0c9d77",'
    '"thread_id":"1f0e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b","agent_name":"firehose",'
    '"timestamp":"2026-11-27T02:30:00.000000Z","data":{"text":"some streamed text"}}'
)


class Opened(WebSocketProtocol):
    """daphne's protocol without its server: the handshake is accepted at once."""

    def onConnect(self, request: Any) -> None:
        """Accept."""

    def onOpen(self) -> None:
        """Nothing to start."""


class Dropping(StringTransport):
    """A transport that keeps nothing."""

    def write(self, data: bytes) -> None:
        """Drop the bytes."""


def per_frame(send: Any, protocol: Any, frames: int) -> float:
    """Return the best of 5 timings of `send(protocol, FRAME)`, in µs per frame."""
    runs = timeit.repeat(lambda: send(protocol, FRAME, False), number=frames, repeat=5)
    return min(runs) / frames * 1e6


def main() -> None:
    """Time both ways and print them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=200_000)
    args = parser.parse_args()
    autobahn_logging.install()  # as chatplatform/asgi.py does under daphne
    factory = WebSocketServerFactory("ws://localhost")
    factory.protocol = Opened
    factory.setProtocolOptions(**daphne_defaults())  # as daphne's Server.run does
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(Dropping())
    protocol.dataReceived(HANDSHAKE)
    protocol.client_addr = ("127.0.0.1", 1)
    assert protocol.state == protocol.STATE_OPEN
    theirs = per_frame(WebSocketProtocol.serverSend, protocol, args.frames)
    textframes.install()
    assert textframes.plain(protocol), "daphne's sockets would not take our frame writer"
    ours = per_frame(WebSocketProtocol.serverSend, protocol, args.frames)
    print(f"daphne's serverSend through autobahn: {theirs:.2f} µs a frame")
    print(f"with realtime/textframes.py:          {ours:.2f} µs a frame")


if __name__ == "__main__":
    main()
