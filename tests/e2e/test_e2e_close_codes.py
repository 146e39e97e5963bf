"""Every close code the server sends, checked against daphne (1000 or 3000-4999 only)."""

import asyncio
import json
import signal

import pytest
import websockets

from realtime.consumer import CLOSE_CODES
from tests.daphne import Daphne, manage, sqlite_env

pytestmark = pytest.mark.e2e


def test_every_close_code_is_one_daphne_lets_an_application_send():
    assert all(code == 1000 or 3000 <= code <= 4999 for code in CLOSE_CODES)


async def closed_with(ws):
    """Read until the server closes; return the frames and the close code received."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    except websockets.ConnectionClosed:
        pass
    return frames, ws.protocol.close_rcvd.code


def connect(server, token):
    return websockets.connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
    )


async def test_oversize_frame_gets_message_too_large_then_4009():
    with sqlite_env(WS_MAX_FRAME_BYTES="1024") as env, Daphne(env) as server:
        token = manage(env, "issue_token", "big", "--create-user")
        async with connect(server, token) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
            frames, code = await closed_with(ws)
    assert [f["error"]["code"] for f in frames] == ["message_too_large"]
    assert code == 4009


async def test_a_socket_over_the_per_user_limit_gets_4008():
    with sqlite_env(WS_MAX_CONNECTIONS_PER_USER="1") as env, Daphne(env) as server:
        token = manage(env, "issue_token", "many", "--create-user")
        async with connect(server, token) as first:
            assert json.loads(await first.recv())["type"] == "connection_established"
            async with connect(server, token) as second:
                frames, code = await closed_with(second)
            await first.send(json.dumps({"type": "ping", "request_id": "still"}))
            assert json.loads(await first.recv())["type"] == "pong"
    assert [f["type"] for f in frames] == ["error"]
    assert code == 4008


async def test_anonymous_upgrades_get_4401():
    with sqlite_env() as env, Daphne(env) as server:
        async with websockets.connect(server.ws_url) as ws:
            frames, code = await closed_with(ws)
    assert frames == [] and code == 4401


async def test_connects_while_the_process_drains_get_4012():
    with sqlite_env(AGENT_SHUTDOWN_GRACE_SECONDS="3") as env:
        server = Daphne(env).start()
        try:
            token = manage(env, "issue_token", "late", "--create-user")
            async with connect(server, token) as ws:
                await ws.recv()
                payload = {"agent": "stepper", "message": "long", "options": {"steps": 50}}
                await ws.send(json.dumps({"type": "start_agent", "payload": payload}))
                await ws.recv()
                server.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                async with connect(server, token) as late:
                    frames, code = await closed_with(late)
            server.proc.wait(timeout=20)
        finally:
            server.stop()
        assert not server.error_lines()
    assert frames == [] and code == 4012
