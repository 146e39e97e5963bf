"""Replay throughput and reconnect-to-caught-up time through a real daphne.

Usage: python bench/replay.py [--clients 1000] [--storm-only]
- replay: a 10,000-event backlog replayed by `resume` (events/s, median of 3);
- catch-up: connect, `resume` 100 missed events, `resume_complete` (ms, 30 tries);
- reconnect storm: `--clients` users, 100 missed events each, all reconnect and
  resume at once (waves of 100 upgrades in flight): seconds until every one has
  its resume_complete with all 100 events.
Runs on SQLite, and on PostgreSQL when it is reachable.
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

from bench import loadclient
from bench.results import cpu_seconds, machine, record, write_section
from bench.users import issue_tokens
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


async def storm_client(url: str, token: str, wave: asyncio.Semaphore) -> int:
    """Reconnect and resume from 0; return the number of events received before completion.

    A lean socket (bench/loadclient.py): websockets' protocol straight on the
    transport, frames counted as they arrive, so that the client's own work
    per frame is not what the storm measures.
    """
    loop = asyncio.get_running_loop()
    hello: asyncio.Future[None] = loop.create_future()
    complete: asyncio.Future[None] = loop.create_future()
    count = 0

    def on_text(raw: bytes) -> None:
        nonlocal count
        if not hello.done():
            hello.set_result(None)
        elif b'"resume_complete"' in raw:
            if not complete.done():
                complete.set_result(None)
        elif not complete.done():
            count += b'"seq"' in raw

    headers = {"Authorization": f"Bearer {token}"}
    socket: loadclient.LeanSocket | None = None
    try:
        async with wave:
            socket = await loadclient.connect(url, headers, on_text, seconds=60)
            await asyncio.wait_for(hello, 60)
        socket.send_text('{"type":"resume","payload":{"after_seq":0}}')
        await asyncio.wait_for(complete, 60)
    finally:
        if socket is not None:  # a timed-out client does not leave its socket open
            await socket.close()
    return count


async def storm(url: str, tokens: list[str]) -> tuple[float, list[int]]:
    """Every client reconnects and resumes at once; return (seconds until all done, counts)."""
    wave = asyncio.Semaphore(100)
    started = time.perf_counter()
    counts = await asyncio.gather(*(storm_client(url, token, wave) for token in tokens))
    return time.perf_counter() - started, list(counts)


def run_storm(env: dict[str, str], server: Daphne, clients: int) -> tuple[float, int, float]:
    """Seed `clients` users with 100 events each, then time the storm.

    Returns (seconds, clients complete, daphne's CPU seconds meanwhile).
    """
    prefix = f"storm{uuid.uuid4().hex[:6]}-"
    tokens = issue_tokens(env, clients, prefix=prefix)
    seed_backlog(env, [f"{prefix}{i}" for i in range(clients)], CATCH_UP, "step %d of a run")
    assert server.proc is not None
    cpu_before = cpu_seconds(server.proc.pid)
    seconds, counts = asyncio.run(storm(server.ws_url, tokens))
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    return seconds, sum(1 for c in counts if c == CATCH_UP), cpu


def storm_only(label: str, clients: int, postgres: str = "") -> None:
    """Measure and print the reconnect storm alone (to compare two versions side by side)."""
    database = postgres_env(postgres) if postgres else sqlite_env()
    with database as env, Daphne(env) as server:
        seconds, complete, cpu = run_storm(env, server, clients)
    print(
        f"{label}: storm of {clients}: {seconds:.2f} s, {complete} complete, daphne CPU {cpu:.2f} s"
    )


def run_case(label: str, clients: int, postgres: str = "") -> list[str]:
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
        storm_seconds, complete, storm_cpu = run_storm(env, server, clients)
    q = statistics.quantiles(catch_up, n=20)
    record(f"reconnect storm s, {label}", storm_seconds)
    record(f"reconnect storm complete, {label}", complete)
    print(
        f"{label}: replay {statistics.median(rates):,.0f} events/s; catch-up of {CATCH_UP}: "
        f"median {statistics.median(catch_up):.1f} ms, p95 {q[18]:.1f} ms; storm of {clients}: "
        f"{storm_seconds:.2f} s, {complete} complete, daphne CPU {storm_cpu:.2f} s"
    )
    return [
        f"| {label} | {statistics.median(rates):,.0f} | {min(rates):,.0f} | "
        f"{statistics.median(catch_up):.1f} | {q[18]:.1f} | {storm_seconds:.2f} "
        f"({complete:,}/{clients:,} complete, "
        f"{complete * CATCH_UP / storm_seconds:,.0f} events/s) | {storm_cpu:.2f} |"
    ]


def main() -> None:
    """Measure and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument(
        "--storm-only",
        action="store_true",
        help="only the reconnect storm, printed (RESULTS.md is left as it is)",
    )
    args = parser.parse_args()
    if args.storm_only:
        storm_only("SQLite", args.clients)
        if reachable(POSTGRES_URL, 5432):
            storm_only("PostgreSQL", args.clients, POSTGRES_URL)
        return
    rows = run_case("SQLite", args.clients)
    if reachable(POSTGRES_URL, 5432):
        rows += run_case("PostgreSQL", args.clients, POSTGRES_URL)
    write_section(
        "replay",
        "\n".join(
            [
                "## Replay and catch-up through daphne",
                "",
                f"`python bench/replay.py --clients {args.clients}` on {machine()}. "
                "Replay: `resume` from 0 over a "
                f"{BACKLOG:,}-event backlog, read in pages of 500 (median and worst of 3). "
                f"Catch-up: open a socket, `resume` {CATCH_UP} missed events, receive "
                "`resume_complete` (30 tries). Reconnect storm: "
                f"{args.clients:,} users with {CATCH_UP} missed events each reconnect and "
                "`resume` at once (at most 100 upgrades in flight), time until the last "
                "`resume_complete`. Client in a separate process (the storm's sockets are "
                "the lean client's, `bench/loadclient.py`).",
                "",
                "| database | replay events/s (median) | replay events/s (worst) | "
                f"catch-up {CATCH_UP} median ms | catch-up p95 ms | reconnect storm s "
                "| daphne CPU s in the storm |",
                "|---|---|---|---|---|---|---|",
                *rows,
            ]
        ),
    )


if __name__ == "__main__":
    main()
