"""A long soak of the protocol model (tests/protocol_model.py) against real daphne processes.

Usage: python bench/protocol_soak.py [--seeds 1-40] [--operations 300]
                                     [--layouts memory,redis,two-processes]
Each seed drives random requests over tabs of two users while stepper runs
produce events, then checks every invariant of tests/protocol_model.py. Prints
how many operations, runs, stored events and received frames were checked,
and every failing seed with what broke (replay one with
PROTOCOL_MODEL_SEEDS=<seed> PROTOCOL_MODEL_OPERATIONS=<n> pytest
tests/e2e/test_protocol_model.py). Redis and PostgreSQL layouts run when reachable.
"""

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.protocol_model import Driver, ModelViolation, layout
from tests.services import POSTGRES_URL, REDIS_URL, reachable


def seeds_of(text: str) -> list[int]:
    """Parse '1-40' or '3,7,9' into seeds."""
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in text.split(",")]


async def soak(seeds: list[int], operations: int, layouts: list[str]) -> int:
    totals: Counter[str] = Counter()
    failed: list[str] = []
    started = time.monotonic()
    for name in layouts:
        if name != "memory" and not reachable(REDIS_URL, 6379):
            print(f"{name}: skipped, Redis not reachable at {REDIS_URL}")
            continue
        if name == "two-processes" and not reachable(POSTGRES_URL, 5432):
            print(f"{name}: skipped, PostgreSQL not reachable at {POSTGRES_URL}")
            continue
        # One set of servers per layout: seeds follow each other on it, as users would.
        with layout(name, REDIS_URL, POSTGRES_URL) as (env, servers):
            for seed in seeds:
                driver = Driver(seed, env, servers, operations)
                try:
                    trial = await driver.run()
                except ModelViolation as broken:
                    failed.append(f"{name} seed {seed}: {broken}")
                    print(f"{name} seed {seed}: BROKEN\n{broken}")
                    trial = driver.trial
                else:
                    print(f"{name} {trial.summary()}")
                totals["trials"] += 1
                totals["operations"] += sum(trial.operations.values())
                totals["runs"] += trial.runs
                totals["events"] += trial.events_checked
                totals["frames"] += trial.frames_checked
    print(
        f"\nsoak: {totals['trials']} trials, {totals['operations']} operations, "
        f"{totals['runs']} runs, {totals['events']} stored events, "
        f"{totals['frames']} frames checked in {time.monotonic() - started:.0f} s; "
        f"{len(failed)} failed"
    )
    for line in failed:
        print(f"FAILED {line.splitlines()[0]}")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-40")
    parser.add_argument("--operations", type=int, default=300)
    parser.add_argument("--layouts", default="memory,redis,two-processes")
    args = parser.parse_args()
    sys.exit(asyncio.run(soak(seeds_of(args.seeds), args.operations, args.layouts.split(","))))


if __name__ == "__main__":
    main()
