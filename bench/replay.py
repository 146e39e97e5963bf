"""Replay throughput and reconnect-to-caught-up time through a real daphne.

Usage: python bench/replay.py
- replay: a 10,000-event backlog replayed by `resume` (events/s, median of 3);
- catch-up: connect, `resume` 100 missed events, `resume_complete` (ms, 30 tries).
Runs on SQLite, and on PostgreSQL when it is reachable.
"""

import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import machine, write_section
from tests.daphne import Daphne, manage, postgres_env, seed_backlog, sqlite_env
from tests.services import POSTGRES_URL, reachable

BACKLOG = 10_000
CATCH_UP = 100


async def replay(url: str, token: str, after: int) -> tuple[float, int]:
    """Connect, resume after `after`; return (seconds to resume_complete, events received)."""
    started = time.perf_counter()
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=2**24
    ) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "payload": {"after_seq": after}}))
        count = 0
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "resume_complete":
                return time.perf_counter() - started, count
            count += 1


def run_case(label: str, postgres: str = "") -> list[str]:
    """Measure one database configuration; return table rows."""
    database = postgres_env(postgres) if postgres else sqlite_env()
    with database as env, Daphne(env) as server:
        username = f"bench{uuid.uuid4().hex[:6]}"
        token = manage(env, "issue_token", username, "--create-user")
        seed_backlog(env, username, BACKLOG, "step %d: some streamed text of a typical length")
        rates = []
        for _ in range(3):
            seconds, count = asyncio.run(replay(server.ws_url, token, 0))
            assert count == BACKLOG, count
            rates.append(count / seconds)
        catch_up = []
        for _ in range(30):
            seconds, count = asyncio.run(replay(server.ws_url, token, BACKLOG - CATCH_UP))
            assert count == CATCH_UP, count
            catch_up.append(seconds * 1000)
    q = statistics.quantiles(catch_up, n=20)
    print(
        f"{label}: replay {statistics.median(rates):,.0f} events/s; catch-up of {CATCH_UP}: "
        f"median {statistics.median(catch_up):.1f} ms, p95 {q[18]:.1f} ms"
    )
    return [
        f"| {label} | {statistics.median(rates):,.0f} | {min(rates):,.0f} | "
        f"{statistics.median(catch_up):.1f} | {q[18]:.1f} |"
    ]


def main() -> None:
    """Measure and write the figures."""
    rows = run_case("SQLite")
    if reachable(POSTGRES_URL, 5432):
        rows += run_case("PostgreSQL", POSTGRES_URL)
    write_section(
        "replay",
        "\n".join(
            [
                "## Replay and catch-up through daphne",
                "",
                f"`python bench/replay.py` on {machine()}. Replay: `resume` from 0 over a "
                f"{BACKLOG:,}-event backlog, read in pages of 500 (median and worst of 3). "
                f"Catch-up: open a socket, `resume` {CATCH_UP} missed events, receive "
                "`resume_complete` (30 tries). Client in a separate process.",
                "",
                "| database | replay events/s (median) | replay events/s (worst) | "
                f"catch-up {CATCH_UP} median ms | catch-up p95 ms |",
                "|---|---|---|---|---|",
                *rows,
            ]
        ),
    )


if __name__ == "__main__":
    main()
