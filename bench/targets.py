"""The targets table of bench/RESULTS.md, from the figures the benches recorded (figures.json).

Usage: python bench/targets.py   (`make bench` runs it last, after every bench)
"""

import json
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import FIGURES, machine, write_section


@dataclass(frozen=True)
class Target:
    """One target: what it asks, the figure it reads, how that figure is shown and judged."""

    asks: str
    figure: str
    met: Callable[[float], bool]
    unit: str = ""
    also: tuple[str, ...] = ()  # figures shown beside it (raw websockets, plain Channels, ...)


MEMORY, REDIS, RAW, PLAIN = "ours, in-memory", "ours, Redis", "raw websockets", "plain Channels"
STORED = "raw websockets, stored in PostgreSQL before sent"  # bench/floor.py
TARGETS = [
    Target(
        "the load client reads ≥ 40,000 deliveries/s from the raw `websockets` server",
        f"delivered/s, {RAW}, best layout",
        lambda v: v >= 40_000,
        "/s",
        (
            f"delivered/s, {RAW} 100x1",
            f"delivered/s, {RAW} 20x5",
            f"load client CPU µs per delivery, {RAW} 100x1",
            f"server CPU µs per delivery, {RAW} 100x1",
            f"load client CPU µs per delivery, {RAW} 20x5",
            f"server CPU µs per delivery, {RAW} 20x5",
        ),
    ),
    Target(
        "≥ 30,000 deliveries/s per process, SQLite + in-memory layer, nothing missing (100×1)",
        f"delivered/s, {MEMORY} 100x1",
        lambda v: v >= 30_000,
        "/s",
        (
            f"delivered/s, {MEMORY} 20x5",
            f"delivered/s, {RAW} 100x1",
            f"delivered/s, {PLAIN} 100x1",
            f"server CPU µs per delivery, {MEMORY} 100x1",
            f"load client CPU µs per delivery, {MEMORY} 100x1",
        ),
    ),
    Target(
        "≥ 20,000 deliveries/s per process on Redis and PostgreSQL (1 daphne behind nginx)",
        "production delivered/s, 1 process",
        lambda v: v >= 20_000,
        "/s",
        (
            f"delivered/s, {REDIS} 100x1",
            f"floor delivered/s, {STORED}, 1 process",
            f"floor delivered/s, {RAW}, 1 process",
        ),
    ),
    Target(
        "p99 emit-to-socket ≤ 3 ms at 2,000/s (100×1), SQLite + in-memory",
        f"p99 ms at 2,000/s, {MEMORY} 100x1",
        lambda v: v <= 3,
        " ms",
        (
            f"p99 ms at 2,000/s, {RAW} 100x1",
            f"p99 ms at 2,000/s, {PLAIN} 100x1",
            "breakdown p99 ms, emit to published in the server",
            "breakdown p99 ms, store of a batch",
            "breakdown daphne CPU, % of one core",
            "breakdown daphne CPU ms per event",
        ),
    ),
    Target(
        "p99 ≤ 5 ms at 2,000/s on Redis and PostgreSQL (1 daphne behind nginx, TLS)",
        "production p99 ms at 2,000/s, 1 process",
        lambda v: v <= 5,
        " ms",
        (
            f"p99 ms at 2,000/s, {REDIS} 100x1",
            f"floor p99 ms at 2,000/s, {STORED}, 1 process",
            f"floor p99 ms at 2,000/s, {RAW}, 1 process",
            "breakdown p99 ms, emit to published in the server, PostgreSQL",
        ),
    ),
    Target(
        "two processes deliver ≥ 1.7× what one does",
        "production scale factor",
        lambda v: v >= 1.7,
        "×",
        (
            "production delivered/s, 1 process",
            "production delivered/s, 2 processes",
            f"floor delivered/s, {RAW}, 1 process",
            f"floor delivered/s, {RAW}, 2 processes",
            f"floor scale factor, {RAW}",
            f"floor scale factor, {STORED}",
        ),
    ),
    Target(
        "`calculate 6*7` median ≤ 5 ms from start_agent to agent_completed",
        "calculate median ms, in-memory layer, SQLite",
        lambda v: v <= 5,
        " ms",
        (
            "calculate median ms, Redis pub/sub layer, PostgreSQL",
            "admission ms after 0 ms idle",
            "admission ms after 10 ms idle",
        ),
    ),
    Target(
        "1,000 clients reconnecting and resuming 100 events each: all caught up in < 3 s"
        " on PostgreSQL",
        "reconnect storm s, PostgreSQL",
        lambda v: v < 3,
        " s",
        ("reconnect storm s, SQLite",),
    ),
    Target(
        "10,000 idle authenticated sockets at ≤ 25 kB each",
        "idle kB per socket",
        lambda v: v <= 25,
        " kB",
        (
            "idle sockets held",
            "idle socket heap kB, daphne + Twisted + autobahn + Channels + asgiref",
            "idle socket heap kB, ours",
        ),
    ),
]


def shown(figures: dict[str, float], name: str, unit: str = "") -> str:
    """A figure with its name, or 'not measured'."""
    if name not in figures:
        return f"{name}: not measured"
    value = figures[name]
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{text}{unit}"


def cpu_reference_us() -> float:
    """Return the microseconds a fixed pure-Python loop takes here (to compare machines)."""
    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def main() -> None:
    """Write the targets section from bench/figures.json."""
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    lines = [
        "## Targets against measured values",
        "",
        f"From one `make bench` run on {machine()}; each figure is in its section below "
        "with the command that measured it. Everything shares the same 2 cores: the "
        "servers, PostgreSQL, Redis, nginx and the load client. The same virtual machine "
        "is not equally fast every day: as a yardstick, `sum(range(1000))` took "
        f"{cpu_reference_us():.1f} µs in this run (compare runs by it, and trust the "
        "comparisons made within one run).",
        "",
        "| target | measured | beside it (same run) | met |",
        "|---|---|---|---|",
    ]
    for target in TARGETS:
        value = figures.get(target.figure)
        met = "—" if value is None else ("yes" if target.met(value) else "**no**")
        beside = "; ".join(f"{name}: {shown(figures, name)}" for name in target.also)
        lines.append(
            f"| {target.asks} | {shown(figures, target.figure, target.unit)} | {beside} | {met} |"
        )
    ours = [k for k in figures if k.startswith("missing, ours") or k == "production missing"]
    lost = sum(figures[k] for k in ours)
    lines += [
        "",
        f"Missing deliveries in our runs (every capacity run, both layers, and the production "
        f"layout): {lost:,.0f}.",
    ]
    write_section("targets", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
