"""Isolation at scale: 150 users, two tabs each, a run each in flight at once, one daphne."""

import asyncio
import json
import uuid

import pytest
import websockets

from tests.daphne import Daphne, manage, sqlite_env

pytestmark = pytest.mark.e2e

USERS = 150
STEPS = 3
EVENTS_PER_RUN = 1 + STEPS * 4 + 1
ISSUE_SCRIPT = """
from realtime.tokens import token_issue, user_get_or_create
for i in range({n}):
    user = user_get_or_create(username="{prefix}%d" % i, create=True)
    print(user.pk, token_issue(user=user, days=1))
"""


async def tab(url, token):
    ws = await websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=60
    )
    hello = json.loads(await ws.recv())
    assert hello["type"] == "connection_established"
    return ws, hello["user_id"]


async def collect(ws):
    """Frames of one tab until the one run it hears of ends."""
    frames = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        frames.append(frame)
        if frame.get("type") in {"agent_completed", "agent_error", "agent_cancelled"}:
            return frames


async def test_150_users_two_tabs_each_see_only_their_own_complete_runs():
    prefix = f"iso{uuid.uuid4().hex[:6]}"
    overrides = {"WS_START_RATE_BURST": "5", "AGENT_MAX_CONCURRENT_RUNS": "3"}
    with sqlite_env(**overrides) as env, Daphne(env) as server:
        lines = manage(env, "shell", "-c", ISSUE_SCRIPT.format(n=USERS, prefix=prefix)).splitlines()
        users = [line.split() for line in lines if " cpt_" in line]
        assert len(users) == USERS, lines[:5]
        tabs = []
        for first in range(0, USERS, 25):  # connect in batches, 50 sockets at a time
            batch = users[first : first + 25]
            opened = await asyncio.gather(
                *(tab(server.ws_url, token) for _, token in batch for _ in range(2))
            )
            tabs += opened
        assert len(tabs) == 2 * USERS
        by_user = {}
        for ws, user_id in tabs:
            by_user.setdefault(user_id, []).append(ws)
        assert sorted(by_user) == sorted(uid for uid, _ in users)
        # every user starts a run at once, from their first tab
        await asyncio.gather(
            *(
                sockets[0].send(
                    json.dumps(
                        {
                            "type": "start_agent",
                            "request_id": f"u{uid}",
                            "payload": {
                                "agent": "stepper",
                                "message": f"run of {uid}",
                                "options": {"steps": STEPS, "delay_ms": 50},
                            },
                        }
                    )
                )
                for uid, sockets in by_user.items()
            )
        )
        seen = await asyncio.gather(
            *(collect(ws) for uid, sockets in by_user.items() for ws in sockets)
        )
        await asyncio.gather(*(ws.close() for ws, _ in tabs))
    owners = [uid for uid, sockets in by_user.items() for _ in sockets]
    foreign = 0
    for uid, frames in zip(owners, seen, strict=True):
        events = [f for f in frames if "seq" in f]
        runs = {e["run_id"] for e in events}
        assert len(runs) == 1
        starts = [e for e in events if e["type"] == "agent_started"]
        foreign += sum(1 for e in starts if e["data"]["message"] != f"run of {uid}")
        assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        assert len(events) == EVENTS_PER_RUN, (uid, [e["type"] for e in events])
    assert foreign == 0
