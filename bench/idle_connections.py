"""How many idle authenticated WebSockets one daphne process holds, and memory per socket.

Usage: python bench/idle_connections.py [--connections 10000] [--per-user 10]
Starts daphne (SQLite, in-memory layer), opens the sockets (`--per-user` per
user, within the per-user limit) from this separate process in batches, and
reads daphne's resident memory from /proc before and after.
"""

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import machine, record, write_section
from bench.users import issue_tokens
from tests.daphne import Daphne, sqlite_env

BATCH = 50


def rss_kib(pid: int) -> int:
    """Return a process's resident set size in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_sockets(url: str, tokens: list[str], count: int) -> list:
    """Open `count` bearer-token sockets in batches; return them once each is established."""
    sockets: list = []
    for first in range(0, count, BATCH):
        batch = [
            websockets.connect(
                url,
                additional_headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
                open_timeout=60,
                ping_interval=None,
            )
            for i in range(first, min(first + BATCH, count))
        ]
        opened = await asyncio.gather(*batch)
        await asyncio.gather(*(ws.recv() for ws in opened))  # connection_established
        sockets += opened
    return sockets


async def hold(url: str, tokens: list[str], count: int, pid: int) -> tuple[int, int, float]:
    """Open `count` sockets; return (opened, RSS KiB with them open, seconds to open)."""
    started = time.perf_counter()
    sockets = await open_sockets(url, tokens, count)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(3)
    held = rss_kib(pid)
    alive = sum(1 for ws in sockets if ws.state.name == "OPEN")
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return alive, held, elapsed


def main() -> None:
    """Measure and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--per-user", type=int, default=10)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.connections * 2 + 1000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # daphne inherits it
    with sqlite_env(LOG_LEVEL="WARNING") as env, Daphne(env) as server:
        tokens = issue_tokens(env, -(-args.connections // args.per_user))
        url = server.ws_url
        # warm up: one socket, so imports and first-use allocations are not counted
        asyncio.run(hold(url, tokens, 1, server.proc.pid))
        before = rss_kib(server.proc.pid)
        alive, held, elapsed = asyncio.run(hold(url, tokens, args.connections, server.proc.pid))
    per_socket = (held - before) / max(alive, 1)
    record("idle sockets held", alive)
    record("idle kB per socket", per_socket * 1.024)
    print(
        f"{alive}/{args.connections} sockets held; daphne RSS {before / 1024:.1f} -> "
        f"{held / 1024:.1f} MiB, {per_socket:.1f} KiB ({per_socket * 1.024:.1f} kB) per socket; "
        f"opened in {elapsed:.1f} s"
    )
    write_section(
        "idle_connections",
        "\n".join(
            [
                "## Idle authenticated WebSockets on one daphne process",
                "",
                f"`python bench/idle_connections.py --connections {args.connections}` on "
                f"{machine()}. Bearer-token sockets, {args.per_user} for each of "
                f"{len(tokens)} users, opened in batches of {BATCH} from a separate process; "
                "RSS read from /proc.",
                "",
                "| sockets asked | sockets held | RSS before MiB | RSS with sockets MiB "
                "| KiB (kB) per socket | seconds to open | sockets opened/s |",
                "|---|---|---|---|---|---|---|",
                f"| {args.connections} | {alive} | {before / 1024:.1f} | {held / 1024:.1f} | "
                f"{per_socket:.1f} ({per_socket * 1.024:.1f}) | {elapsed:.1f} "
                f"| {alive / elapsed:,.0f} |",
            ]
        ),
    )


if __name__ == "__main__":
    main()
