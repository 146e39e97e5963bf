"""A client that stops reading is dropped before the server buffers without bound."""

import asyncio
import json
import os
import socket
import time
import uuid

import pytest

from tests.daphne import Daphne, manage, seed_backlog, sqlite_env
from tests.wsclient import AgentClient

pytestmark = pytest.mark.e2e

BACKLOG = 20_000
LIMIT = 256 * 1024


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def stalled_socket(port: int, token: str) -> socket.socket:
    """Open a WebSocket, ask for the whole backlog, and never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            "GET /ws/agents/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"connection_established" not in head:
        head += sock.recv(4096)
    sock.sendall(masked_text_frame(json.dumps({"type": "resume", "payload": {"after_seq": 0}})))
    return sock


async def test_client_that_stops_reading_is_dropped_and_others_are_served():
    with sqlite_env(WS_MAX_OUTBOUND_BYTES=str(LIMIT)) as env, Daphne(env) as server:
        slow_user = f"slow{uuid.uuid4().hex[:6]}"
        slow_token = manage(env, "issue_token", slow_user, "--create-user")
        seed_backlog(env, slow_user, BACKLOG, "x" * 200)
        sock = stalled_socket(server.port, slow_token)
        deadline = time.monotonic() + 30
        while "stopped reading" not in server.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        log = server.output()
        # others are served all the while
        other = AgentClient(
            server.ws_url, manage(env, "issue_token", f"ok{uuid.uuid4().hex[:6]}", "--create-user")
        )
        await other.connect()
        run = await other.start("calculate 6*7")
        await other.until_terminal({run["run_id"]})
        await other.close()
        # the stalled socket was cut: reading now ends in EOF or a reset, not the whole backlog
        received = 0
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                received += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        sock.close()
    assert "dropping a socket that stopped reading" in log
    assert other.events[-1]["data"]["result"] == "6*7 = 42"
    assert received < BACKLOG * 200  # far from everything was sent and kept
