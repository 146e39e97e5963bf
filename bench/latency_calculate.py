"""Time `calculate 6*7` from start_agent to agent_completed through a real daphne.

Usage: python bench/latency_calculate.py [--runs 100]
Starts daphne with the in-memory layer and SQLite, then (when reachable) with
Redis and SQLite, and Redis and PostgreSQL, each on a fresh database, and
drives it from this separate client process.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import machine, record, write_section
from tests.daphne import Daphne, manage, postgres_env, sqlite_env
from tests.services import POSTGRES_URL, REDIS_URL, reachable


async def measure(server: Daphne, token: str, runs: int) -> list[float]:
    """Return the milliseconds of each run, run one after another."""
    timings = []
    async with websockets.connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.recv()
        for i in range(runs + 5):
            started = time.perf_counter()
            await ws.send(
                json.dumps({"type": "start_agent", "payload": {"message": "calculate 6*7"}})
            )
            while json.loads(await ws.recv())["type"] != "agent_completed":
                pass
            if i >= 5:  # the first few warm up caches and connections
                timings.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.5 if i % 9 == 8 else 0)  # stay under the start rate limit
    return timings


def run_case(
    label: str, runs: int, postgres: str = "", **env_overrides: str
) -> tuple[str, list[float]]:
    """Start a daphne for one configuration and measure it."""
    overrides = {"WS_START_RATE_PER_SECOND": "1000", "WS_START_RATE_BURST": "1000", **env_overrides}
    database = postgres_env(postgres, **overrides) if postgres else sqlite_env(**overrides)
    with database as env, Daphne(env) as server:
        token = manage(env, "issue_token", f"bench{uuid.uuid4().hex[:6]}", "--create-user")
        return label, asyncio.run(measure(server, token, runs))


def main() -> None:
    """Measure each layer and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    cases = [run_case("in-memory layer, SQLite", args.runs)]
    if reachable(REDIS_URL, 6379):
        cases.append(
            run_case(
                "Redis pub/sub layer, SQLite",
                args.runs,
                REDIS_URL=REDIS_URL,
                CHANNEL_LAYER_PREFIX=f"bench{uuid.uuid4().hex[:6]}",
            )
        )
        if reachable(POSTGRES_URL, 5432):
            cases.append(
                run_case(
                    "Redis pub/sub layer, PostgreSQL",
                    args.runs,
                    postgres=POSTGRES_URL,
                    REDIS_URL=REDIS_URL,
                    CHANNEL_LAYER_PREFIX=f"bench{uuid.uuid4().hex[:6]}",
                )
            )
    rows = []
    for label, ms in cases:
        q = statistics.quantiles(ms, n=100)
        rows.append(
            f"| {label} | {len(ms)} | {statistics.median(ms):.1f} | {q[94]:.1f} | {max(ms):.1f} |"
        )
        print(f"{label}: median {statistics.median(ms):.1f} ms, p95 {q[94]:.1f} ms")
        record(f"calculate median ms, {label}", statistics.median(ms))
    body = "\n".join(
        [
            "## `calculate 6*7`: start_agent to agent_completed through daphne",
            "",
            f"`python bench/latency_calculate.py --runs {args.runs}` on {machine()}.",
            "One client, runs one after another; 7 events a run, each persisted before it is sent.",
            "",
            "| configuration | runs | median ms | p95 ms | max ms |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    write_section("latency_calculate", body)


if __name__ == "__main__":
    main()
