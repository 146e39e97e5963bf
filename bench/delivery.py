"""Delivery rate, loss and latency: our full path beside plain Channels and a raw websockets server.

Usage: python bench/delivery.py [--seconds 8] [--latency-rate 2000] [--capacity-rate 20000]

Each server runs in its own process (daphne, or python for the raw server); the
sockets are held and read by the lean load client (bench/loadclient.py), spread
over `--client-processes` worker processes (2), so the client is not the limit:
it reads the raw server's fan-out at well over 40,000 deliveries/s. Ours
(in-memory layer, then Redis) sanitises, numbers and persists every event
(SQLite) before sending it; the others only forward. Two layouts: 100 users x
1 tab and 20 users x 5 tabs.
Latency runs ask for `--latency-rate` deliveries/s (an event reaches every tab
of its user, so 20 x 5 emits a fifth of that) and run twice; capacity runs ask
for `--capacity-rate` deliveries/s and report what was delivered per second and
whether anything was missing.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from websockets.sync.client import connect as sync_connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadclient  # noqa: E402
from bench.results import cpu_seconds, machine, record, write_section  # noqa: E402
from bench.users import FIREHOSE, issue_tokens  # noqa: E402
from tests.daphne import Daphne, project_env, sqlite_env  # noqa: E402
from tests.services import REDIS_URL, free_port, reachable  # noqa: E402

LAYOUTS = [(100, 1), (20, 5)]
# Deliveries per second the client waits for a backlog of ours to drain at, at least.
DRAIN_RATE = 2000
PLOT = Path(__file__).with_name("delivery.png")


@dataclass
class Result:
    """One run of one system: what was asked, what arrived, and how late."""

    system: str
    users: int
    tabs: int
    kind: str  # "latency" or "capacity"
    asked_per_s: float  # deliveries per second asked for
    expected: int
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0  # from the first event due to the last one read
    client_cpu: float = 0.0  # the load client's CPU seconds for the run
    server_cpu: float = 0.0  # the server process's CPU seconds for the run (0: not measured)

    def per_delivery_us(self, cpu: float) -> float:
        """Return CPU seconds as microseconds per delivery read."""
        return cpu / self.delivered * 1e6 if self.delivered else 0.0

    @property
    def delivered(self) -> int:
        """Return how many deliveries arrived."""
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Return deliveries per second achieved."""
        return self.delivered / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        """Return a latency quantile in ms."""
        if len(self.latencies) < 3:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def plain_like(
    url: str,
    result: Result,
    seconds: float,
    processes: int,
    servers: list[tuple[str, int]],
    ssl_cafile: str | None = None,
) -> None:
    """Drive the plain Channels app or the raw servers (same little protocol).

    The sockets open at `url`; each of `servers` (the URL it is driven at, its
    pid) makes every user's events at the asked rate for the sockets it holds,
    and its CPU for the run is kept.
    """
    sockets = [
        loadclient.Socket(greet=json.dumps({"user": i % result.users}))
        for i in range(result.users * result.tabs)
    ]
    emit_rate = result.asked_per_s / result.tabs
    per_socket = int(emit_rate * seconds) // result.users
    drive = json.dumps({"drive": {"users": result.users, "rate": emit_rate, "seconds": seconds}})
    with contextlib.ExitStack() as stack:
        cpu_at_start: list[float] = []

        def start() -> None:
            drivers = [
                stack.enter_context(sync_connect(driver_url, compression=None))
                for driver_url, _ in servers
            ]
            cpu_at_start.append(sum(cpu_seconds(pid) for _, pid in servers))
            for driver in drivers:
                driver.send(drive)

        outcome = loadclient.run(
            url,
            sockets,
            per_socket=per_socket,
            deadline_s=seconds + 20,
            stamp=loadclient.PLAIN,
            processes=processes,
            when_ready=start,
            ssl_cafile=ssl_cafile,
        )
        result.server_cpu = sum(cpu_seconds(pid) for _, pid in servers) - cpu_at_start[0]
    result.latencies, result.seconds = list(outcome.latencies), outcome.seconds
    result.client_cpu = outcome.cpu


def ours(
    url: str,
    tokens: list[str],
    result: Result,
    seconds: float,
    processes: int,
    ssl_cafile: str | None = None,
    pid: int | None = None,
) -> None:
    """Each user runs the firehose agent; every tab of the user reads its events.

    With `pid`, that server process's CPU for the run is kept too.
    """
    per_user_rate = max(1, round(result.asked_per_s / result.tabs / result.users))
    count = int(per_user_rate * seconds)

    def start(user: int) -> str:
        # Users' slots are spread over the interval, as the plain driver spreads its events.
        phase = user * 1000 // result.users
        options = {"rate": per_user_rate, "count": count, "phase": phase, "start_in_ms": 1000}
        payload = {"agent": "firehose", "message": "go", "options": options}
        return json.dumps({"type": "start_agent", "payload": payload})

    sockets = [
        loadclient.Socket(
            headers={"Authorization": f"Bearer {token}"},
            skip_hello=True,
            start=start(user) if tab == 0 else None,
        )
        for user, token in enumerate(tokens[: result.users])
        for tab in range(result.tabs)
    ]
    cpu_at_start: list[float] = []
    outcome = loadclient.run(
        url,
        sockets,
        per_socket=count,
        # Ours stores every event before sending, so a backlog arrives late, not
        # never: wait long enough for all of it to drain at DRAIN_RATE as well.
        deadline_s=seconds + 30 + len(sockets) * count / DRAIN_RATE,
        stamp=loadclient.OURS,
        processes=processes,
        when_ready=lambda: cpu_at_start.append(cpu_seconds(pid) if pid else 0.0),
        ssl_cafile=ssl_cafile,
    )
    if pid:
        result.server_cpu = cpu_seconds(pid) - cpu_at_start[0]
    result.latencies, result.seconds = list(outcome.latencies), outcome.seconds
    result.client_cpu = outcome.cpu


def table_head(first: str) -> list[str]:
    """The header of a table of `row`s, its first column called `first`."""
    return [
        f"| {first} | users×tabs | run | asked/s | delivered/s | arrived | missing "
        "| p50 ms | p99 ms | max ms | CPU µs per delivery: server / load client |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]


def cpu_cell(r: Result) -> str:
    """The server's and the load client's CPU per delivery ('-' for a server not measured)."""
    server = f"{r.per_delivery_us(r.server_cpu):.0f}" if r.server_cpu else "-"
    return f"{server} / {r.per_delivery_us(r.client_cpu):.0f}"


def row(r: Result) -> str:
    """Format one result as a table row and print it."""
    lost = r.expected - r.delivered
    line = (
        f"| {r.system} | {r.users}×{r.tabs} | {r.kind} | {r.asked_per_s:,.0f} | {r.rate:,.0f} "
        f"| {r.delivered:,} / {r.expected:,} | {lost:,} | {r.quantile(0.5):.1f} "
        f"| {r.quantile(0.99):.1f} | {max(r.latencies, default=0):.1f} | {cpu_cell(r)} |"
    )
    print(line, flush=True)
    return line


def runs(args) -> list[tuple[str, float, int, int]]:
    """Return the (kind, deliveries/s asked, users, tabs) of every run, latency twice."""
    plan = []
    for users, tabs in LAYOUTS:
        for _ in range(2):
            plan.append(("latency", args.latency_rate, users, tabs))
        plan.append(("capacity", args.capacity_rate, users, tabs))
    return plan


def measure_ours(label: str, extra_env: dict[str, str], args) -> list[Result]:
    """Start our daphne (with its database and layer), measure every run, stop it."""
    results = []
    with sqlite_env(WS_START_RATE_BURST="1000", **extra_env) as env, Daphne(env) as server:
        tokens = issue_tokens(env, max(u for u, _ in LAYOUTS), setup=FIREHOSE)
        for kind, asked, users, tabs in runs(args):
            seconds = args.seconds if kind == "latency" else args.capacity_seconds
            per_user = max(1, round(asked / tabs / users))
            r = Result(label, users, tabs, kind, asked, per_user * int(seconds) * users * tabs)
            assert server.proc is not None
            ours(server.ws_url, tokens, r, seconds, args.client_processes, pid=server.proc.pid)
            results.append(r)
            row(r)
    return results


def measure_plain_like(label: str, command: list[str], ws_path: str, args) -> list[Result]:
    """Start one of the comparison servers, measure every run, stop it."""
    env = project_env()
    env.pop("DJANGO_SETTINGS_MODULE")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, *(part.format(port=port) for part in command)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)
    results = []
    try:
        url = f"ws://127.0.0.1:{port}{ws_path}"
        for kind, asked, users, tabs in runs(args):
            seconds = args.seconds if kind == "latency" else args.capacity_seconds
            expected = int(asked / tabs * seconds) // users * users * tabs
            r = Result(label, users, tabs, kind, asked, expected)
            plain_like(url, r, seconds, args.client_processes, [(url, server.pid)])
            results.append(r)
            row(r)
    finally:
        server.terminate()
        server.wait()
    return results


def plot(results: list[Result], path: Path, rate: float) -> None:
    """Draw each system's latency distributions (both latency runs) for each layout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"ours, in-memory": "C0", "ours, Redis": "C1", "plain Channels": "C2"}
    fig, axes = plt.subplots(1, len(LAYOUTS), figsize=(12, 4.8), sharey=True)
    for ax, (users, tabs) in zip(axes, LAYOUTS, strict=True):
        runs_seen: dict[str, int] = {}
        for r in results:
            if r.kind != "latency" or (r.users, r.tabs) != (users, tabs) or not r.latencies:
                continue
            nth = runs_seen[r.system] = runs_seen.get(r.system, 0) + 1
            ordered = sorted(max(v, 0.01) for v in r.latencies)
            ys = [i / len(ordered) for i in range(1, len(ordered) + 1)]
            ax.plot(
                ordered,
                ys,
                color=colours.get(r.system, "C3"),
                linestyle="-" if nth == 1 else "--",
                label=f"{r.system}, run {nth} (p99 {r.quantile(0.99):.1f} ms)",
            )
        ax.set_xscale("log")
        ax.set_xlabel("produced to read by the client, ms (log scale)")
        ax.set_title(f"{users} users × {tabs} tab{'s' if tabs > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("fraction of deliveries")
    fig.suptitle(f"Latency distributions (CDF) at {rate:,.0f} deliveries/s, one daphne process")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def ratios(results: list[Result]) -> list[str]:
    """Compare ours with plain Channels per layout: capacity and p99 at the latency rate."""
    lines = []
    for layout in LAYOUTS:
        users, tabs = layout

        def pick(system: str, kind: str, layout: tuple[int, int] = layout) -> list[Result]:
            return [
                r
                for r in results
                if r.system == system and r.kind == kind and (r.users, r.tabs) == layout
            ]

        plain_cap = pick("plain Channels", "capacity")
        plain_lat = pick("plain Channels", "latency")
        for system in ("ours, in-memory", "ours, Redis"):
            cap, lat = pick(system, "capacity"), pick(system, "latency")
            if not (cap and plain_cap and lat and plain_lat):
                continue
            cap_ratio = cap[0].rate / plain_cap[0].rate if plain_cap[0].rate else 0
            p99 = max(r.quantile(0.99) for r in lat)
            plain_p99 = max(r.quantile(0.99) for r in plain_lat)
            lines.append(
                f"| {system} | {users}×{tabs} | {cap_ratio:.2f}× | {p99:.1f} vs {plain_p99:.1f} |"
            )
    return lines


def main() -> None:
    """Run every system through every run and write the tables and the plot."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--capacity-seconds", type=float, default=3)
    parser.add_argument("--latency-rate", type=float, default=2000)
    parser.add_argument("--capacity-rate", type=float, default=60000)
    parser.add_argument("--systems", default="memory,redis,plain,raw", help="a subset to run")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="load-client worker processes"
    )
    args = parser.parse_args()
    systems = set(args.systems.split(","))
    results = measure_ours("ours, in-memory", {}, args) if "memory" in systems else []
    redis_note = ""
    if "redis" not in systems:
        pass
    elif reachable(REDIS_URL, 6379):
        redis_env = {"REDIS_URL": REDIS_URL, "CHANNEL_LAYER_PREFIX": f"bench{uuid.uuid4().hex[:6]}"}
        results += measure_ours("ours, Redis", redis_env, args)
    else:
        redis_note = f"Redis was not reachable at {REDIS_URL}: no Redis rows in this run.\n\n"
    if "plain" in systems:
        results += measure_plain_like(
            "plain Channels",
            ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "bench.plain.asgi:application"],
            "/ws/",
            args,
        )
    if "raw" in systems:
        results += measure_plain_like(
            "raw websockets", ["-m", "bench.plain.raw_server", "{port}"], "/", args
        )
    if systems != {"memory", "redis", "plain", "raw"}:
        return  # a partial run is for looking, not for RESULTS.md
    for r in results:
        key = f"{r.system} {r.users}x{r.tabs}"
        if r.kind == "capacity":
            record(f"delivered/s, {key}", r.rate)
            record(f"missing, {key}", r.expected - r.delivered)
            record(f"load client CPU µs per delivery, {key}", r.per_delivery_us(r.client_cpu))
            record(f"server CPU µs per delivery, {key}", r.per_delivery_us(r.server_cpu))
    raw = [r.rate for r in results if r.system == "raw websockets" and r.kind == "capacity"]
    if raw:
        # The client's own ceiling shows where the raw server does the least per delivery.
        record("delivered/s, raw websockets, best layout", max(raw))
    for system in {r.system for r in results}:
        for users, tabs in LAYOUTS:
            p99s = [
                r.quantile(0.99)
                for r in results
                if (r.system, r.users, r.tabs, r.kind) == (system, users, tabs, "latency")
            ]
            if p99s:
                record(f"p99 ms at 2,000/s, {system} {users}x{tabs}", max(p99s))
    plot(results, PLOT, args.latency_rate)
    write_section(
        "delivery",
        "\n".join(
            [
                "## Delivery beside plain Channels and raw websockets",
                "",
                f"`python bench/delivery.py --seconds {args.seconds:g} "
                f"--capacity-seconds {args.capacity_seconds:g} "
                f"--latency-rate {args.latency_rate:g} --capacity-rate {args.capacity_rate:g}` "
                f"on {machine()}, the lean load client in {args.client_processes} worker processes "
                "on the same 2 cores.",
                "",
                "Each event goes to every tab of its user; 'asked' and 'delivered/s' count "
                "deliveries (events × tabs). Latency: from the event being produced (ours: the "
                "agent calling the emitter, which sanitises, numbers and persists it before "
                "sending) to the client reading it. Latency runs are done twice; capacity runs "
                "ask for more than a system can do and report what it delivered per second "
                "(first event due to last one read). 'missing' = expected minus arrived by 20 s "
                "after the last event was due (for ours, 30 s plus the time to deliver the "
                f"whole run at {DRAIN_RATE:,}/s, as ours stores every event before sending "
                "and so delivers a backlog late rather than never): late or lost.",
                "",
                redis_note + f"![latency distributions]({PLOT.name})",
                "",
                *table_head("system"),
                *(row(r) for r in results),
                "",
                "Ours against plain Channels (capacity ratio; worst p99 of the two latency runs):",
                "",
                "| ours | users×tabs | delivered/s vs plain | p99 ms ours vs plain |",
                "|---|---|---|---|",
                *ratios(results),
            ]
        ),
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
