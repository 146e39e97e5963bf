"""Delivery rate and latency: our full path beside plain Channels and a raw websockets server.

Usage: python bench/delivery.py [--users 100] [--seconds 5] [--rates 500,2000]
Each server runs in its own process (daphne, or python for the raw server); this
process holds one socket per user and drives the events. Ours persists, numbers and
sanitises every event (SQLite, in-memory layer); the others only forward.
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import machine, write_section  # noqa: E402
from tests.daphne import Daphne, manage, project_env, sqlite_env  # noqa: E402
from tests.services import free_port  # noqa: E402

TOKENS = """
from realtime.tokens import token_issue, user_get_or_create
from agents.models import Agent
Agent.objects.update_or_create(name="firehose", defaults={{
    "implementation": "bench.firehose.FirehoseAgent", "allowed_tools": [], "enabled": True}})
for i in range({n}):
    print("TOKEN", token_issue(user=user_get_or_create(username="{p}%d" % i, create=True), days=1))
"""


async def collect(sockets, expected: int, seconds: float, stamp) -> tuple[list[float], int]:
    """Read every socket until `expected` events or the deadline; return latencies (ms)."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def read(ws) -> None:
        while len(latencies) < expected:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return
            now = time.time()
            sent = stamp(json.loads(raw))
            if sent is not None:
                latencies.append((now - sent) * 1000)

    await asyncio.gather(*(read(ws) for ws in sockets))
    return latencies, len(latencies)


async def plain_like(url: str, users: int, rate: float, seconds: float):
    """Drive the plain Channels app or the raw server (same little protocol)."""
    sockets = [await websockets.connect(url, max_size=None) for _ in range(users)]
    for i, ws in enumerate(sockets):
        await ws.send(json.dumps({"user": i}))
        await ws.recv()
    driver = await websockets.connect(url)
    await driver.send(json.dumps({"drive": {"users": users, "rate": rate, "seconds": seconds}}))
    expected = int(rate * seconds)
    result = await collect(sockets, expected, seconds + 10, lambda f: f.get("t"))
    for ws in [*sockets, driver]:
        await ws.close()
    return result


async def ours(url: str, tokens: list[str], rate: float, seconds: float):
    """Each user runs the firehose agent at rate/users; measure emit-to-socket."""
    sockets = []
    for token in tokens:
        ws = await websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
        )
        await ws.recv()
        sockets.append(ws)
    per_user = max(1, round(rate / len(tokens)))
    count = int(per_user * seconds)
    for ws in sockets:
        await ws.send(
            json.dumps(
                {
                    "type": "start_agent",
                    "payload": {
                        "agent": "firehose",
                        "message": "go",
                        "options": {"rate": per_user, "count": count},
                    },
                }
            )
        )

    def stamp(frame):
        if frame.get("type") == "partial_result":
            return float(frame["data"]["delta"])
        return None

    result = await collect(sockets, count * len(tokens), seconds + 20, stamp)
    for ws in sockets:
        await ws.close()
    return result


def summary(label: str, rate: float, seconds: float, latencies: list[float], got: int) -> str:
    expected = int(rate * seconds)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 2 else [0.0] * 99
    p50 = statistics.median(latencies) if latencies else 0.0
    line = (
        f"| {label} | {rate:,.0f} | {got:,} / {expected:,} | {p50:.1f} "
        f"| {q[98]:.1f} | {max(latencies, default=0):.1f} |"
    )
    print(line)
    return line


def measure_plain_like(
    label: str, command: list[str], ws_path: str, env: dict[str, str], rates: list[float], args
) -> list[str]:
    """Start one of the comparison servers, measure it at every rate, stop it."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, *(part.format(port=port) for part in command)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)
    try:
        url = f"ws://127.0.0.1:{port}{ws_path}"
        return [
            summary(
                label,
                rate,
                args.seconds,
                *asyncio.run(plain_like(url, args.users, rate, args.seconds)),
            )
            for rate in rates
        ]
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    """Run every system at every rate and write the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rates", default="500,2000")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rows = []
    with sqlite_env(WS_START_RATE_BURST="1000") as env, Daphne(env) as server:
        prefix = f"d{uuid.uuid4().hex[:6]}"
        out = manage(env, "shell", "-c", TOKENS.format(n=args.users, p=prefix))
        tokens = [line.split()[1] for line in out.splitlines() if line.startswith("TOKEN ")]
        for rate in rates:
            lat, got = asyncio.run(ours(server.ws_url, tokens, rate, args.seconds))
            rows.append(summary("ours (daphne, persisted)", rate, args.seconds, lat, got))
    plain_env = project_env()
    plain_env.pop("DJANGO_SETTINGS_MODULE")
    for label, command, ws_path in (
        (
            "plain Channels (daphne)",
            ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "bench.plain.asgi:application"],
            "/ws/",
        ),
        ("raw websockets", ["-m", "bench.plain.raw_server", "{port}"], "/"),
    ):
        rows += measure_plain_like(label, command, ws_path, plain_env, rates, args)
    write_section(
        "delivery",
        "\n".join(
            [
                "## Delivery beside plain Channels and raw websockets",
                "",
                f"`python bench/delivery.py --users {args.users} --seconds {args.seconds:g} "
                f"--rates {args.rates}` "
                f"on {machine()}. {args.users} users × 1 socket, events spread evenly over users; "
                "latency from the event being produced (ours: the agent calling the emitter, which "
                "sanitises, numbers and persists it) to the client reading it. "
                "Client in a separate process.",
                "",
                "'delivered' counts what arrived by 20 s after the last event was due "
                "(the rest was late, not lost: ours stores every event first).",
                "",
                "| system | events/s asked | delivered | p50 ms | p99 ms | max ms |",
                "|---|---|---|---|---|---|",
                *rows,
            ]
        ),
    )


if __name__ == "__main__":
    main()
