"""SQLite chosen by DATABASE_URL gets the same configuration as SQLITE_PATH, under load."""

import asyncio
import json
import tempfile
from pathlib import Path

import pytest
import websockets

from tests.daphne import Daphne, manage, project_env

pytestmark = pytest.mark.e2e

USERS = 50
TOKENS_SCRIPT = """
from django.contrib.auth import get_user_model
from realtime.tokens import token_issue
for i in range({count}):
    user = get_user_model().objects.create_user(username=f"crowd{{i}}")
    print(token_issue(user=user, days=1))
"""


async def connect_and_run(url, token):
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30
    ) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "connection_established", hello
        payload = {"agent": "triage", "message": "calculate 6*7"}
        await ws.send(json.dumps({"type": "start_agent", "request_id": "go", "payload": payload}))
        kinds = []
        while not kinds or kinds[-1] not in {"agent_completed", "agent_error"}:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            kinds.append(frame["type"])
        return kinds


def test_database_url_sqlite_gets_the_sqlite_settings():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "url.sqlite3"
        env = project_env(DATABASE_URL=f"sqlite:///{path}", STATIC_ROOT=tmp)
        shown = manage(
            env,
            "shell",
            "--no-imports",
            "-c",
            "from django.db import connection; c = connection.cursor(); "
            "c.execute('PRAGMA journal_mode'); print(c.fetchone()[0]); "
            "from django.conf import settings; d = settings.DATABASES['default']; "
            "print(d['NAME'], d['OPTIONS']['transaction_mode'], d['OPTIONS']['timeout'])",
        )
        assert shown.splitlines() == ["wal", f"{path} IMMEDIATE 30"]


async def test_fifty_users_connect_and_start_at_once_on_a_database_url_sqlite():
    with tempfile.TemporaryDirectory() as tmp:
        env = project_env(
            DATABASE_URL=f"sqlite:///{Path(tmp) / 'url.sqlite3'}",
            STATIC_ROOT=tmp,
            WS_MAX_CONNECTIONS_PER_USER="5",
        )
        manage(env, "migrate", "--noinput")
        tokens = manage(
            env, "shell", "--no-imports", "-c", TOKENS_SCRIPT.format(count=USERS)
        ).split()
        assert len(tokens) == USERS
        with Daphne(env) as server:
            results = await asyncio.gather(
                *(connect_and_run(server.ws_url, token) for token in tokens),
                return_exceptions=True,
            )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    assert all(kinds[-1] == "agent_completed" for kinds in results), results[:3]
