"""Where an idle authenticated socket's memory goes: Python's allocations, by library.

Usage: python bench/socket_memory.py [--connections 2000]
Starts daphne (SQLite, in-memory layer) under bench/traced_daphne.py, opens one
socket to warm up, starts tracing, opens `--connections` bearer-token sockets
(10 per user) from this separate process, and snapshots what was allocated
since and is still alive. Each allocation is counted against the innermost
frame of a known library on its stack (Python's own modules, asyncio included,
count for the library that called them), per socket.
"""

import argparse
import asyncio
import collections
import os
import resource
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.idle_connections import open_sockets  # noqa: E402
from bench.results import machine, record, write_section  # noqa: E402
from bench.users import issue_tokens  # noqa: E402
from tests.daphne import Daphne, sqlite_env  # noqa: E402

OURS = ("chatplatform", "agents", "realtime")
OWNER_OURS = "ours (chatplatform, agents, realtime)"
LIBRARIES = {
    "daphne": "daphne",
    "twisted": "Twisted",
    "autobahn": "autobahn (and txaio)",
    "txaio": "autobahn (and txaio)",
    "channels": "Channels",
    "django": "Django",
    "asgiref": "asgiref",
}
SERVER_STACK = ("daphne", "Twisted", "autobahn (and txaio)", "Channels", "asgiref")


def owner(filename: str) -> str | None:
    """Return the library (or 'ours') a source file belongs to, None for Python's own."""
    if "site-packages/" in filename:
        package = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        return LIBRARIES.get(package, package)
    relative = filename.removeprefix(str(ROOT) + "/")
    if relative != filename and relative.split("/", 1)[0] in OURS:
        return OWNER_OURS
    return None


def attribute(snapshot: tracemalloc.Snapshot) -> collections.Counter[str]:
    """Sum the traced bytes per owner of the innermost library frame."""
    sizes: collections.Counter[str] = collections.Counter()
    for stat in snapshot.statistics("traceback"):
        found = "Python (no library frame traced)"
        for frame in reversed(list(stat.traceback)):  # innermost first
            name = owner(frame.filename)
            if name is not None:
                found = name
                break
        sizes[found] += stat.size
    return sizes


def wait_written(path: Path, timeout: float = 120) -> None:
    """Wait until `path` exists and has stopped growing."""
    deadline, size = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        now = path.stat().st_size if path.exists() else -1
        if now > 0 and now == size:
            return
        size = now
        time.sleep(1)
    raise RuntimeError(f"no snapshot written to {path}")


async def measure(url: str, tokens: list[str], count: int, pid: int, snapshot: Path) -> int:
    """Warm up, start tracing, hold `count` sockets, snapshot; return how many were open."""
    warm = await open_sockets(url, tokens, 1)
    await warm[0].close()
    await asyncio.sleep(1)
    os.kill(pid, signal.SIGUSR1)  # start tracing
    await asyncio.sleep(1)
    sockets = await open_sockets(url, tokens, count)
    await asyncio.sleep(2)
    os.kill(pid, signal.SIGUSR1)  # snapshot
    await asyncio.to_thread(wait_written, snapshot)
    alive = sum(1 for ws in sockets if ws.state.name == "OPEN")
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return alive


def main() -> None:
    """Measure, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections * 2 + 1000), hard))
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "sockets.tm"
        with (
            sqlite_env(LOG_LEVEL="WARNING", TRACED_DAPHNE_SNAPSHOT=str(snapshot)) as env,
            Daphne(env, module="bench.traced_daphne") as server,
        ):
            assert server.proc is not None
            tokens = issue_tokens(env, -(-args.connections // 10))
            alive = asyncio.run(
                measure(server.ws_url, tokens, args.connections, server.proc.pid, snapshot)
            )
        sizes = attribute(tracemalloc.Snapshot.load(str(snapshot)))
    per_socket = {name: size / alive / 1000 for name, size in sizes.items()}
    total = sum(per_socket.values())
    stack = sum(per_socket.get(name, 0.0) for name in SERVER_STACK)
    record("idle socket heap kB, traced", total)
    record("idle socket heap kB, daphne + Twisted + autobahn + Channels + asgiref", stack)
    record("idle socket heap kB, ours", per_socket.get(OWNER_OURS, 0.0))
    rows = [
        f"| {name} | {kb:.2f} | {kb / total * 100:.0f}% |"
        for name, kb in sorted(per_socket.items(), key=lambda item: -item[1])
        if kb >= 0.01
    ]
    for row in rows:
        print(row)
    print(f"total {total:.1f} kB per socket; server stack {stack:.1f} kB")
    write_section(
        "socket_memory",
        "\n".join(
            [
                "## Where an idle socket's memory goes",
                "",
                f"`python bench/socket_memory.py --connections {args.connections}` on "
                f"{machine()}. Python's allocations made while {alive:,} bearer-token "
                "sockets were opened and still alive with them, per socket, by the "
                "innermost library frame that made them (tracemalloc, 10 frames; Python's "
                "own modules, asyncio included, count for the library that called them). "
                "RSS per socket (the idle-sockets section) is this plus the allocator's "
                "overhead.",
                "",
                "| made by | kB per socket | share |",
                "|---|---|---|",
                *rows,
                f"| **all** | **{total:.2f}** | 100% |",
                "",
                f"daphne, Twisted, autobahn, Channels and asgiref together: {stack:.1f} kB "
                "per socket before any of our code.",
            ]
        ),
    )


if __name__ == "__main__":
    main()
