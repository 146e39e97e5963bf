"""Where an event's time goes at 2,000 events/s: the writer's stages beside what the client saw.

Usage: python bench/latency_breakdown.py [--seconds 8] [--rate 2000] [--runs 2] [--postgres]
Starts daphne (in-memory layer and SQLite, or with --postgres Redis and
PostgreSQL) under bench/timed_daphne.py, drives
100 users x 1 tab of the firehose agent at `--rate` events/s with the load
client of bench/delivery.py, and reports, per batch of the event writer: how
long its oldest event waited to be taken, the store (wall and the writer
thread's CPU), the way back to the loop and the publish to the sockets; and
daphne's CPU per stored event. The client's latency less the server's is the
socket, the kernel and the client.
"""

import argparse
import itertools
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.delivery import Result, ours  # noqa: E402
from bench.results import cpu_seconds, machine, record, write_section  # noqa: E402
from bench.users import FIREHOSE, issue_tokens  # noqa: E402
from tests.daphne import Daphne, postgres_env, sqlite_env  # noqa: E402
from tests.services import POSTGRES_URL, REDIS_URL, reachable  # noqa: E402

USERS = 100
SAMPLE_SECONDS = 0.25


def quantile(values: list[float], q: float) -> float:
    """Return the q-quantile of the values (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stages(batches: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each stage's duration per batch, in ms."""
    done = [b for b in batches if "published" in b]
    return {
        "oldest event's wait for its batch": [(b["taken"] - b["oldest"]) * 1e3 for b in done],
        "store, wall": [(b["stored"] - b["taken"]) * 1e3 for b in done],
        "store, CPU of the storing thread": [b["store_cpu"] * 1e3 for b in done],
        "back to the loop": [(b["publishing"] - b["stored"]) * 1e3 for b in done],
        "publish to the sockets": [(b["published"] - b["publishing"]) * 1e3 for b in done],
        "emit to published, oldest of batch": [(b["published"] - b["oldest"]) * 1e3 for b in done],
        "events per batch": [float(b["size"]) for b in done],
    }


def measure(seconds: float, rate: float, runs: int, postgres: bool = False) -> dict[str, Any]:
    """Run the load `runs` times against one timed daphne; return what was seen."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "batches.json"
        overrides = {"WS_START_RATE_BURST": "1000"}
        if postgres:
            environment = postgres_env(
                POSTGRES_URL,
                REDIS_URL=REDIS_URL,
                CHANNEL_LAYER_PREFIX=f"breakdown{os.getpid()}",
                **overrides,
            )
        else:
            environment = sqlite_env(**overrides)
        with (
            environment as env,
            Daphne({**env, "TIMED_DAPHNE_OUT": str(out)}, module="bench.timed_daphne") as server,
        ):
            assert server.proc is not None
            tokens = issue_tokens(env, USERS, setup=FIREHOSE)
            server.proc.send_signal(signal.SIGUSR1)  # keep only what follows
            per_user = max(1, round(rate / USERS))
            clients: list[Result] = []
            pid, samples, sampling = server.proc.pid, [], threading.Event()

            def sample() -> None:
                while not sampling.wait(SAMPLE_SECONDS):
                    samples.append((time.time(), cpu_seconds(pid)))

            sampler = threading.Thread(target=sample)
            sampler.start()
            for _ in range(runs):
                result = Result("ours", USERS, 1, "latency", rate, per_user * int(seconds) * USERS)
                ours(server.ws_url, tokens, result, seconds, 2)
                clients.append(result)
                print(
                    f"client: {result.delivered:,} delivered, p50 {result.quantile(0.5):.1f} ms, "
                    f"p99 {result.quantile(0.99):.1f} ms",
                    flush=True,
                )
            sampling.set()
            sampler.join()
            server.proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # let the write finish
            kept = json.loads(out.read_text())
    return {"clients": clients, "kept": kept, **streaming_cpu(samples, kept["batches"], rate)}


def streaming_cpu(
    samples: list[tuple[float, float]], batches: list[dict[str, Any]], rate: float
) -> dict[str, float]:
    """The server's CPU while the events stream (intervals publishing at least half the rate)."""
    cpu = wall = events = 0.0
    for (start, cpu_start), (end, cpu_end) in itertools.pairwise(samples):
        count = sum(b["size"] for b in batches if start <= b.get("published", 0) < end)
        if count >= rate * (end - start) / 2:
            cpu, wall, events = cpu + cpu_end - cpu_start, wall + end - start, events + count
    return {"cpu": cpu, "wall": wall, "events": events}


def report(seen: dict[str, Any], args: argparse.Namespace) -> str:
    """Print and return the section for RESULTS.md."""
    clients: list[Result] = seen["clients"]
    latencies = [v for r in clients for v in r.latencies]
    per_stage = stages(seen["kept"]["batches"])
    server = per_stage["emit to published, oldest of batch"]
    full = seen["kept"]["collections"]
    layout = "Redis, PostgreSQL" if args.postgres else "in-memory layer, SQLite"
    lines = [
        f"## Where an event's time goes at 2,000 events/s{' on PostgreSQL' * args.postgres}",
        "",
        f"`python bench/latency_breakdown.py --seconds {args.seconds:g} --rate {args.rate:g} "
        f"--runs {args.runs}{' --postgres' * args.postgres}` on {machine()}: daphne ({layout}) "
        "under bench/timed_daphne.py, 100 users × 1 tab of the firehose agent, the load client "
        "in 2 worker processes on the same 2 cores.",
        "",
        "| stage | p50 | p99 | max |",
        "|---|---|---|---|",
    ]
    for name, values in per_stage.items():
        unit = "" if name == "events per batch" else " ms"
        lines.append(
            f"| {name} | {quantile(values, 0.5):.2f}{unit} | {quantile(values, 0.99):.2f}{unit} "
            f"| {max(values, default=0):.2f}{unit} |"
        )
    lines.append(
        f"| client: emit to read (every delivery) | {quantile(latencies, 0.5):.2f} ms "
        f"| {quantile(latencies, 0.99):.2f} ms | {max(latencies, default=0):.2f} ms |"
    )
    busy = seen["cpu"] / seen["wall"] if seen["wall"] else 0.0
    per_event = seen["cpu"] / seen["events"] * 1e3 if seen["events"] else 0.0
    lines += [
        "",
        f"daphne's CPU while the events streamed: {busy:.0%} of one core, {per_event:.3f} ms per "
        f"stored and delivered event ({seen['events']:,.0f} events in {seen['wall']:.1f} s; "
        f"{len(per_stage['events per batch']):,} batches in all, "
        f"{sum(1 for b in seen['kept']['batches'] if b.get('where') == 'loop'):,} of them stored "
        "on the loop's thread, the others on the writer's); garbage collections: "
        f"{sum(1 for _, g, _ in full if g == 2)} of generation 2 "
        f"(the longest {max((t for _, g, t in full if g == 2), default=0) * 1e3:.1f} ms), "
        f"{sum(1 for _, g, _ in full if g < 2)} younger "
        f"(the longest {max((t for _, g, t in full if g < 2), default=0) * 1e3:.1f} ms).",
    ]
    store = per_stage["store, wall"]
    on = ", PostgreSQL" if args.postgres else ""
    record(f"breakdown p50 ms, store of a batch{on}", quantile(store, 0.5))
    record(f"breakdown p99 ms, store of a batch{on}", quantile(store, 0.99))
    record(f"breakdown p99 ms, emit to published in the server{on}", quantile(server, 0.99))
    record(f"breakdown p99 ms, client{on}", quantile(latencies, 0.99))
    record(f"breakdown daphne CPU, % of one core{on}", busy * 100)
    record(f"breakdown daphne CPU ms per event{on}", per_event)
    body = "\n".join(lines)
    print(body)
    return body


def main() -> None:
    """Measure and write the section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--postgres", action="store_true", help="on Redis and PostgreSQL (the production stores)"
    )
    args = parser.parse_args()
    if args.postgres and not (reachable(REDIS_URL, 6379) and reachable(POSTGRES_URL, 5432)):
        print(f"skipped: needs Redis at {REDIS_URL} and PostgreSQL at {POSTGRES_URL}")
        return
    seen = measure(args.seconds, args.rate, args.runs, args.postgres)
    write_section(f"latency_breakdown{'_postgres' * args.postgres}", report(seen, args))


if __name__ == "__main__":
    main()
