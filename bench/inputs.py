"""Time an approval: resolve_input sent to input_resolved received, through real daphne processes.

Usage: python bench/inputs.py [--runs 100]
Each run is a stepper run of one step with `approve_tools`; a tab approves its
request as soon as it sees it and times, on the wire, `resolve_input` ->
`input_accepted` and `resolve_input` -> `input_resolved` (the run woken and its
event stored and sent). Layouts: one process (in-memory layer, SQLite); two
processes sharing Redis and PostgreSQL with the approving tab on the process
that does *not* run the run (woken by a control message through Redis). Also
reports how the runs were woken (chatplatform_input_wakeups_total). Writes
its section of bench/RESULTS.md.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import machine, write_section
from tests.daphne import Daphne, manage, shared_services, sqlite_env
from tests.services import POSTGRES_URL, REDIS_URL, reachable

RELAXED = {"WS_START_RATE_PER_SECOND": "1000", "WS_START_RATE_BURST": "1000"}
OPTIONS = {"steps": 1, "delay_ms": 0, "approve_tools": True}


async def connect(server: Daphne, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
    )
    await ws.recv()  # connection_established
    return ws


async def next_of(ws: websockets.ClientConnection, wanted: str) -> dict:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == wanted:
            return frame


async def measure(runner: Daphne, approver: Daphne, token: str, runs: int) -> dict[str, list]:
    """Run `runs` approvals one after another; return the two timings in ms per run."""
    starter, deciding = await connect(runner, token), await connect(approver, token)
    accepted_ms, resolved_ms = [], []
    try:
        for n in range(runs):
            payload = {"agent": "stepper", "message": f"approve {n}", "options": OPTIONS}
            await starter.send(json.dumps({"type": "start_agent", "payload": payload}))
            asked = await next_of(deciding, "input_requested")
            sent = time.perf_counter()
            resolve = {"interrupt_id": asked["data"]["interrupt_id"], "decision": "approve"}
            await deciding.send(json.dumps({"type": "resolve_input", "payload": resolve}))
            await next_of(deciding, "input_accepted")
            accepted_ms.append((time.perf_counter() - sent) * 1000)
            await next_of(deciding, "input_resolved")
            resolved_ms.append((time.perf_counter() - sent) * 1000)
            await next_of(deciding, "agent_completed")
    finally:
        await starter.close()
        await deciding.close()
    return {"accepted": accepted_ms, "resolved": resolved_ms}


def wakeups(server: Daphne) -> dict[str, int]:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("chatplatform_input_wakeups_total{"):
            via = line.split('via="')[1].split('"')[0]
            counts[via] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"{statistics.median(ordered):.1f} / {p95:.1f} / {ordered[-1]:.1f}"


async def run_all(runs: int) -> list[str]:
    rows = []
    with sqlite_env(**RELAXED) as env, Daphne(env) as server:
        token = manage(env, "issue_token", f"in{uuid.uuid4().hex[:6]}", "--create-user")
        timings = await measure(server, server, token, runs)
        rows.append(("one process, in-memory layer, SQLite", timings, wakeups(server)))
    if reachable(REDIS_URL, 6379) and reachable(POSTGRES_URL, 5432):
        with shared_services(POSTGRES_URL, REDIS_URL, **RELAXED) as (env, (first, second)):
            token = manage(env, "issue_token", f"in{uuid.uuid4().hex[:6]}", "--create-user")
            timings = await measure(first, second, token, runs)
            rows.append(
                (
                    "two processes, Redis + PostgreSQL, approved on the other",
                    timings,
                    wakeups(first),
                )
            )
    else:
        print("two processes: skipped, Redis or PostgreSQL not reachable")
    lines = [
        "| layout | runs | resolve_input -> input_accepted ms (median / p95 / max)"
        " | resolve_input -> input_resolved ms (median / p95 / max) | woken |",
        "|---|---|---|---|---|",
    ]
    for name, timings, woken in rows:
        lines.append(
            f"| {name} | {len(timings['resolved'])} | {summary(timings['accepted'])} | "
            f"{summary(timings['resolved'])} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(woken.items()))} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    lines = asyncio.run(run_all(args.runs))
    print("\n".join(lines))
    write_section(
        "inputs",
        "## Approvals: resolve_input to input_resolved through daphne\n\n"
        f"`python bench/inputs.py --runs {args.runs}` on {machine()}. One tab starts"
        " stepper runs with `approve_tools`, one after another; another tab of the same"
        " user approves each request as soon as it arrives and times it on the wire."
        " `woken` counts how the waiting runs learnt of the decisions (local: same"
        " process; control: a message from the other process through Redis; poll: the"
        " run's own 2 s look at its row, which would mean a lost wake-up).\n\n" + "\n".join(lines),
    )


if __name__ == "__main__":
    main()
