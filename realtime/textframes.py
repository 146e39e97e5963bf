"""Writing a plain text frame to the socket in one step, as autobahn would write it.

daphne sends each text message through autobahn's `sendMessage`, `sendFrame`
and `sendData`: type assertions, traffic counters, compression, fragmentation
and masking checks, two debug-log calls and a join, for what is, on a server
socket with none of those options on, a two-to-ten-byte header and the payload.
`install` makes daphne's `serverSend` write that frame straight to the
transport while the socket is open and autobahn would do nothing more; anything
else (binary, a socket not open, compression, fragmentation, frame logging,
timings, masking, sends already queued, a message over the payload limit)
takes autobahn's path. daphne always sets a payload limit (1 MiB unless told
otherwise), so the limit is checked against each message, as autobahn does,
not taken to rule the socket out.
tests/realtime/test_textframes.py compares the bytes with autobahn's own, and
tests/realtime/test_adapters.py fails when the daphne or autobahn code relied
on changes.
"""

from typing import Any

from realtime.patching import Method, replace_once


def text_frame(payload: bytes) -> bytes:
    """Return a final, unmasked text frame (RFC 6455 §5.2) carrying `payload`."""
    length = len(payload)
    if length <= 125:
        return bytes((0x81, length)) + payload
    if length <= 0xFFFF:
        return b"\x81\x7e" + length.to_bytes(2, "big") + payload
    return b"\x81\x7f" + length.to_bytes(8, "big") + payload


def plain(protocol: Any) -> bool:
    """Tell whether autobahn would send a text message on this socket as one plain frame."""
    return bool(
        protocol.state == protocol.STATE_OPEN
        and protocol._perMessageCompress is None
        and not protocol.send_queue
        and not protocol.autoFragmentSize
        and not protocol.maskServerFrames
        and not protocol.logFrames
        and not protocol.logOctets
        and protocol.trackedTimings is None
    )


def plain_frame(protocol: Any, text: str) -> bytes | None:
    """The frame autobahn would write for this text message, or None where autobahn must send it."""
    if not plain(protocol):
        return None
    payload = text.encode("utf8")
    if 0 < protocol.maxMessagePayloadSize < len(payload):
        return None  # autobahn refuses it (PayloadExceededError), as it always has
    return text_frame(payload)


def install() -> bool:
    """Make daphne write plain text frames itself; tell whether daphne was there to change."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return False

    def framing_plain_text(original: Method) -> Method:
        def server_send(self: Any, content: Any, binary: bool = False) -> None:
            frame = None if binary else plain_frame(self, content)
            if frame is None:
                original(self, content, binary)
                return
            self.transport.write(frame)

        return server_send

    replace_once(WebSocketProtocol, "serverSend", framing_plain_text)
    return True
