"""The floor under the production layout: raw `websockets` servers behind the same nginx.

Usage: python bench/floor.py [--seconds 6] [--capacity-seconds 4] [--capacity-rate 40000]
       python bench/floor.py --store-variants   (the stored server's latency, 4 ways)
The same nginx config, TLS, load client (wss://, 2 processes), 100 users × 1 tab
and runs as bench/production.py, with bench/plain/raw_server.py in place of
daphne: first doing nothing but the broadcast, then committing each event to
PostgreSQL before sending it (batched as ours is; no counters, no Redis). One
and two processes each; each process is driven directly (not through nginx) for
the users of the sockets it holds. What these reach on this machine bounds what
any server could reach in the same layout: the 1 -> 2 scale factor and the p99
of "stored before sent" at 2,000/s. Prints the rows and writes its section of
bench/RESULTS.md.
"""

import argparse
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.delivery import ROOT, Result, plain_like, row, table_head
from bench.production import layout_parser, layout_runs, nginx_in_front
from bench.results import machine, record, write_section
from tests.daphne import project_env
from tests.services import POSTGRES_URL, free_port, reachable

USERS, TABS = 100, 1
RAW, STORED = "raw websockets", "raw websockets, stored in PostgreSQL before sent"


@contextmanager
def scratch_database() -> Iterator[str]:
    """Yield the URL of a fresh database holding an empty floor_events table; drop it after."""
    name = f"cp_floor_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_URL.rpartition('/')[0]}/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            # Like our events table: a row per event, unique by (user, seq), a timestamp.
            conn.execute(
                "CREATE TABLE floor_events (user_id int NOT NULL, seq bigint NOT NULL, "
                "frame text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (user_id, seq))"
            )
            conn.execute("CREATE TABLE floor_counters (user_id int PRIMARY KEY, last bigint)")
        yield url
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_servers(
    stack: ExitStack, processes: int, store: str | None, flags: tuple[str, ...] = ()
) -> list[tuple[int, int]]:
    """Start the raw servers; return each one's (port, pid). They stop when `stack` closes."""
    env = project_env()
    env.pop("DJANGO_SETTINGS_MODULE")
    servers = []
    for _ in range(processes):
        port = free_port()
        command = [sys.executable, "-m", "bench.plain.raw_server", str(port)]
        proc = subprocess.Popen(
            command + (["--store", store, *flags] if store else []),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(proc.wait)
        stack.callback(proc.terminate)
        servers.append((port, proc.pid))
    time.sleep(3)
    return servers


def measure(
    system: str,
    processes: int,
    args: argparse.Namespace,
    flags: tuple[str, ...] = (),
    latency_only: bool = False,
) -> list[Result]:
    """Start `processes` raw servers behind nginx and run the latency and capacity runs."""
    results = []
    with ExitStack() as stack:
        store = stack.enter_context(scratch_database()) if system == STORED else None
        servers = start_servers(stack, processes, store, flags)
        url, cafile = nginx_in_front(stack, [port for port, _ in servers])
        label = f"{system}{''.join(' ' + f for f in flags)}, {processes} process"
        label += f"{'es' if processes > 1 else ''} + nginx"
        for kind, asked, seconds in layout_runs(args, latency_only):
            expected = int(asked / TABS * seconds) // USERS * USERS * TABS
            r = Result(label, USERS, TABS, kind, asked, expected)
            # Each server is driven directly and makes every user's events; only the
            # users whose socket it holds get them, so the sockets get the asked rate.
            drivers = [(f"ws://127.0.0.1:{port}/", pid) for port, pid in servers]
            plain_like(url, r, seconds, args.client_processes, drivers, ssl_cafile=cafile)
            results.append(r)
            row(r)
    return results


def main() -> None:
    """Measure both servers with one and two processes and write the section."""
    parser = layout_parser(__doc__)
    parser.add_argument(
        "--store-variants",
        action="store_true",
        help="only the stored server's latency runs, 1 process, as it is and with --thread, "
        "--counters and both (printed; RESULTS.md is left as it is)",
    )
    args = parser.parse_args()
    if not reachable(POSTGRES_URL, 5432):
        print(f"skipped: needs PostgreSQL at {POSTGRES_URL}")
        return
    if args.store_variants:
        for flags in [(), ("--thread",), ("--counters",), ("--counters", "--thread")]:
            measure(STORED, 1, args, flags, latency_only=True)
        return
    lines, factors = [], []
    for system in (RAW, STORED):
        one, two = measure(system, 1, args), measure(system, 2, args)
        cap = [next(r.rate for r in rs if r.kind == "capacity") for rs in (one, two)]
        factor = cap[1] / cap[0] if cap[0] else 0.0
        p99 = max(r.quantile(0.99) for r in one if r.kind == "latency")
        print(f"{system}: scale factor 1 -> 2 processes {factor:.2f}x, p99 {p99:.2f} ms")
        record(f"floor delivered/s, {system}, 1 process", cap[0])
        record(f"floor delivered/s, {system}, 2 processes", cap[1])
        record(f"floor scale factor, {system}", factor)
        record(f"floor p99 ms at 2,000/s, {system}, 1 process", p99)
        lines += [row(r) for r in one + two]
        factors.append(f"- {system}: scale factor from 1 to 2 processes **{factor:.2f}×**.")
    write_section(
        "floor",
        "\n".join(
            [
                "## The floor under the production layout: raw servers behind the same nginx",
                "",
                f"`python bench/floor.py --seconds {args.seconds:g} "
                f"--capacity-seconds {args.capacity_seconds:g} "
                f"--capacity-rate {args.capacity_rate:g}` on {machine()}. The shipped nginx "
                "config, TLS, load client and runs of the production layout, with the raw "
                "`websockets` server (bench/plain/raw_server.py) in place of daphne: first "
                "broadcasting only, then committing each event to PostgreSQL before sending "
                "it (batched while a commit is in flight; no counters, no Redis, no envelope). "
                "What these reach bounds any server in the layout on this machine.",
                "",
                *table_head("layout"),
                *lines,
                "",
                *factors,
            ]
        ),
    )


if __name__ == "__main__":
    main()
