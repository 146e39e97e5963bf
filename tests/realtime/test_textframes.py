"""Plain text frames written by us are byte for byte the frames autobahn writes."""

from typing import Any

import pytest
from autobahn.exception import PayloadExceededError
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.testing import StringTransport

from realtime.textframes import plain, plain_frame, text_frame

HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def open_socket(**options: Any) -> tuple[WebSocketServerProtocol, StringTransport]:
    """An autobahn server socket after a real handshake, and what it has written since."""
    factory = WebSocketServerFactory("ws://localhost")
    factory.protocol = WebSocketServerProtocol
    for name, value in options.items():
        if name in ("logFrames", "logOctets"):
            setattr(factory, name, value)  # the factory's own, copied to each socket
        else:
            factory.setProtocolOptions(**{name: value})
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(HANDSHAKE)
    assert protocol.state == protocol.STATE_OPEN
    transport.clear()
    return protocol, transport


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000])
def test_a_text_frame_is_the_one_autobahn_sends(size):
    protocol, transport = open_socket()
    payload = ("é" * size).encode("utf8")[:size]
    payload = payload if len(payload) == size else b"x" * size
    assert plain(protocol)
    protocol.sendMessage(payload)
    assert text_frame(payload) == transport.value()


def test_non_ascii_text_is_framed_as_its_utf8_bytes():
    protocol, transport = open_socket()
    text = '{"type":"token","data":{"text":"héllo \u2028 🙂"}}'
    protocol.sendMessage(text.encode("utf8"))
    assert text_frame(text.encode("utf8")) == transport.value()


@pytest.mark.parametrize(
    "options",
    [
        {"autoFragmentSize": 10},
        {"logFrames": True},
        {"logOctets": True},
    ],
    ids=lambda options: next(iter(options)),
)
def test_sockets_with_autobahn_options_on_are_left_to_autobahn(options):
    protocol, _ = open_socket(**options)
    assert not plain(protocol)


def daphne_defaults() -> dict[str, Any]:
    """The socket options daphne's Server sets when run as `daphne` is (Server.run)."""
    import inspect

    from daphne.server import Server

    default = {
        name: parameter.default
        for name, parameter in inspect.signature(Server.__init__).parameters.items()
    }
    return {
        "autoPingTimeout": default["ping_timeout"],
        "allowNullOrigin": True,
        "openHandshakeTimeout": default["websocket_handshake_timeout"],
        "maxMessagePayloadSize": default["websocket_max_message_size"],
        "maxFramePayloadSize": default["websocket_max_frame_size"],
    }


def test_daphnes_own_sockets_are_plain():
    # daphne sets a payload limit on every socket: that alone must not send
    # every frame down autobahn's path (as it did, unnoticed, before this test).
    options = daphne_defaults()
    assert options["maxMessagePayloadSize"] > 0
    protocol, transport = open_socket(**options)
    assert plain(protocol)
    text = '{"type":"agent_thinking","seq":1}'
    protocol.sendMessage(text.encode("utf8"))
    assert plain_frame(protocol, text) == transport.value()


def test_a_message_over_the_payload_limit_is_left_to_autobahn_which_refuses_it():
    protocol, transport = open_socket(maxMessagePayloadSize=1000)
    assert plain(protocol)
    protocol.sendMessage(b"x" * 1000)
    assert plain_frame(protocol, "x" * 1000) == transport.value()
    assert plain_frame(protocol, "é" * 501) is None  # 1,002 bytes
    with pytest.raises(PayloadExceededError):
        protocol.sendMessage(("é" * 501).encode("utf8"))


def test_a_socket_tracking_timings_is_left_to_autobahn():
    protocol, _ = open_socket()
    protocol.trackTimings = False
    protocol.setTrackTimings(True)
    assert not plain(protocol)


def test_a_socket_not_open_or_with_sends_queued_is_left_to_autobahn():
    protocol, _ = open_socket()
    protocol.send_queue.append((b"x", True))
    assert not plain(protocol)
    protocol.send_queue.clear()
    protocol.state = protocol.STATE_CLOSING
    assert not plain(protocol)


def test_compressed_or_masked_sockets_are_left_to_autobahn():
    protocol, _ = open_socket()
    protocol.maskServerFrames = True
    assert not plain(protocol)
    protocol.maskServerFrames = False
    protocol._perMessageCompress = object()
    assert not plain(protocol)
