"""End to end: a real daphne subprocess, driven by real WebSocket clients (websockets)."""

import asyncio
import json
import uuid

import pytest
import websockets

from tests.daphne import Daphne, manage, postgres_env, sqlite_env
from tests.realtime.test_live_path import CALCULATE_TYPES
from tests.services import require_postgres, require_redis

pytestmark = pytest.mark.e2e

TERMINAL = {"agent_completed", "agent_error", "agent_cancelled"}


async def open_tab(server, token):
    ws = await websockets.connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
    )
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert hello["type"] == "connection_established"
    return ws, hello


async def run_events(ws, run_id):
    events = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if frame.get("run_id") == run_id and "seq" in frame:
            events.append(frame)
            if frame["type"] in TERMINAL:
                return events


async def calculate_on_two_tabs(server, token):
    tab1, hello = await open_tab(server, token)
    tab2, _ = await open_tab(server, token)
    await tab1.send(
        json.dumps(
            {
                "type": "start_agent",
                "request_id": "e2e",
                "payload": {"agent": "triage", "message": "calculate 6*7"},
            }
        )
    )
    accepted = json.loads(await asyncio.wait_for(tab1.recv(), 10))
    assert accepted["type"] == "run_accepted" and accepted["request_id"] == "e2e"
    seen1, seen2 = await asyncio.gather(
        run_events(tab1, accepted["run_id"]), run_events(tab2, accepted["run_id"])
    )
    # what each tab saw live equals what the server stored (read back through resume)
    await tab2.send(json.dumps({"type": "resume", "payload": {"after_seq": hello["last_seq"]}}))
    replayed = []
    while True:
        frame = json.loads(await asyncio.wait_for(tab2.recv(), 10))
        if frame["type"] == "resume_complete":
            break
        replayed.append(frame)
    assert seen1 == seen2 == replayed
    assert [e["type"] for e in seen1] == CALCULATE_TYPES
    assert seen1[-1]["data"]["result"] == "6*7 = 42"
    await tab1.close()
    await tab2.close()


def new_token(env):
    return manage(env, "issue_token", f"e2e{uuid.uuid4().hex[:8]}", "--create-user")


async def test_daphne_in_memory_layer_two_tabs():
    with sqlite_env() as env, Daphne(env) as server:
        await calculate_on_two_tabs(server, new_token(env))


@pytest.mark.redis
async def test_daphne_redis_layer_two_tabs():
    redis_url = require_redis()
    with sqlite_env(REDIS_URL=redis_url, CHANNEL_LAYER_PREFIX=f"e2e{uuid.uuid4().hex[:8]}") as env:
        with Daphne(env) as server:
            await calculate_on_two_tabs(server, new_token(env))


@pytest.mark.redis
@pytest.mark.postgres
async def test_daphne_postgres_and_redis_two_tabs():
    redis_url, pg_url = require_redis(), require_postgres()
    with (
        postgres_env(
            pg_url, REDIS_URL=redis_url, CHANNEL_LAYER_PREFIX=f"e2e{uuid.uuid4().hex[:8]}"
        ) as env,
        Daphne(env) as server,
    ):
        await calculate_on_two_tabs(server, new_token(env))


async def test_daphne_closes_anonymous_with_4401_and_refuses_foreign_origins():
    with sqlite_env() as env, Daphne(env) as server:
        async with websockets.connect(server.ws_url, open_timeout=10) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd.code == 4401
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                server.ws_url,
                additional_headers={"Authorization": f"Bearer {new_token(env)}"},
                origin="https://evil.example",
                open_timeout=10,
            )
        assert refused.value.response.status_code == 403
