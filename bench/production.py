"""The production layout: 1 and 2 daphnes behind the shipped nginx config, on Redis and PostgreSQL.

Usage: python bench/production.py [--seconds 6] [--capacity-seconds 4] [--capacity-rate 40000]
Starts PostgreSQL-backed daphne processes sharing Redis behind nginx with the
shipped config (TLS ended at nginx, round robin over the processes), then drives
the firehose agent through wss:// with the lean load client (bench/loadclient.py):
100 users × 1 tab, latency at 2,000 deliveries/s (twice) and capacity. With two
processes each user's tab lands on either, so about half the events cross
processes through Redis. Prints the rows, the 1 -> 2 scale factor, and writes
its section of bench/RESULTS.md.
"""

import argparse
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.delivery import Result, ours, row, table_head
from bench.results import machine, record, write_section
from bench.users import FIREHOSE, issue_tokens
from tests.daphne import shared_services
from tests.nginx import require_nginx, site_config, wait_port
from tests.services import POSTGRES_URL, REDIS_URL, free_port, reachable

USERS, TABS = 100, 1


def nginx_in_front(stack: ExitStack, ports: list[int]) -> tuple[str, str]:
    """Start nginx with the shipped config before `ports`; return the wss:// URL and its CA file.

    It stops when `stack` closes.
    """
    nginx = require_nginx()
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    https = free_port()
    config = site_config(tmp, (ports * 2)[:2], free_port(), https)
    proc = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(config)], stderr=subprocess.DEVNULL)
    stack.callback(proc.wait)
    stack.callback(proc.terminate)
    wait_port(https, proc, tmp / "error.log")
    return f"wss://127.0.0.1:{https}/ws/agents/", str(tmp / "cert.pem")


def layout_parser(description: str | None) -> argparse.ArgumentParser:
    """The arguments of a run of the layout (bench/floor.py takes the same)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--capacity-seconds", type=float, default=4)
    parser.add_argument("--latency-rate", type=float, default=2000)
    parser.add_argument("--capacity-rate", type=float, default=40000)
    parser.add_argument("--client-processes", type=int, default=2)
    return parser


def layout_runs(
    args: argparse.Namespace, latency_only: bool = False
) -> list[tuple[str, float, float]]:
    """The runs of the layout: latency twice, then capacity, as (kind, asked/s, seconds)."""
    runs = [("latency", args.latency_rate, args.seconds)] * 2
    if not latency_only:
        runs.append(("capacity", args.capacity_rate, args.capacity_seconds))
    return runs


def measure(processes: int, args: argparse.Namespace) -> list[Result]:
    """Start `processes` daphnes behind nginx and run the latency and capacity runs."""
    results = []
    with ExitStack() as stack:
        env, servers = stack.enter_context(
            shared_services(
                POSTGRES_URL,
                REDIS_URL,
                processes,
                USE_X_FORWARDED_PROTO="1",
                WS_START_RATE_BURST="1000",
            )
        )
        url, cafile = nginx_in_front(stack, [s.port for s in servers])
        tokens = issue_tokens(env, USERS, setup=FIREHOSE)
        label = f"{processes} daphne{'s' if processes > 1 else ''} + nginx, Redis, PostgreSQL"
        for kind, asked, seconds in layout_runs(args):
            per_user = max(1, round(asked / TABS / USERS))
            r = Result(label, USERS, TABS, kind, asked, per_user * int(seconds) * USERS * TABS)
            ours(url, tokens, r, seconds, args.client_processes, ssl_cafile=cafile)
            results.append(r)
            row(r)
    return results


def main() -> None:
    """Measure one and two processes and write the section."""
    args = layout_parser(__doc__).parse_args()
    if not (reachable(REDIS_URL, 6379) and reachable(POSTGRES_URL, 5432)):
        print(f"skipped: needs Redis at {REDIS_URL} and PostgreSQL at {POSTGRES_URL}")
        return
    one, two = measure(1, args), measure(2, args)
    cap_one = next(r for r in one if r.kind == "capacity")
    cap_two = next(r for r in two if r.kind == "capacity")
    factor = cap_two.rate / cap_one.rate if cap_one.rate else 0.0
    print(f"scale factor 1 -> 2 processes: {factor:.2f}x")
    record("production delivered/s, 1 process", cap_one.rate)
    record("production delivered/s, 2 processes", cap_two.rate)
    record("production missing", sum(r.expected - r.delivered for r in one + two))
    record(
        "production p99 ms at 2,000/s, 1 process",
        max(r.quantile(0.99) for r in one if r.kind == "latency"),
    )
    record("production scale factor", factor)
    write_section(
        "production",
        "\n".join(
            [
                "## The production layout: daphne behind nginx, Redis and PostgreSQL",
                "",
                f"`python bench/production.py --seconds {args.seconds:g} "
                f"--capacity-seconds {args.capacity_seconds:g} "
                f"--capacity-rate {args.capacity_rate:g}` on {machine()}. The shipped nginx "
                "config (TLS ended at nginx, round robin), 1 then 2 daphne processes on one "
                "PostgreSQL and one Redis, 100 users × 1 tab over wss:// from the lean load "
                f"client ({args.client_processes} processes); everything shares the same 2 "
                "cores. Each event is stored in PostgreSQL before it is sent; with two "
                "processes about half the events reach their socket through Redis.",
                "",
                *table_head("layout"),
                *(row(r) for r in one + two),
                "",
                f"Scale factor from 1 to 2 processes (capacity): **{factor:.2f}×**.",
            ]
        ),
    )


if __name__ == "__main__":
    main()
