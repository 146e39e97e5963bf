"""The same admission back to back and after idle gaps: how much slower woken work runs here.

Usage: python bench/idle_wake.py [--calls 60]
Admits a `calculate 6*7` run (agents.session._prepare_and_admit: the agent
read and the admission's five statements on a fresh SQLite database) `--calls`
times in a row for each gap, sleeping the gap before each call, and reports
the median wall and CPU time of a call. A single request to an idle server
pays the slow figure at every step (admission, agent, writer batch), which is
what `calculate 6*7` measures.
"""

import argparse
import atexit
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import machine, record, write_section  # noqa: E402

GAPS_MS = (0, 1, 10, 50)


def measure(calls: int) -> list[tuple[int, float, float]]:
    """Return (gap ms, median wall ms, median CPU ms) per gap."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatplatform.settings")
    scratch = tempfile.mkdtemp(prefix="idle-wake-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ["SQLITE_PATH"] = str(Path(scratch) / "db.sqlite3")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from agents.services.runs import LocalRuns, RunDraft, RunLimits
    from agents.session import _prepare_and_admit

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create(username="idle-wake")
    draft = functools.partial(
        RunDraft,
        user_id=user.pk,
        session_id=None,
        thread_id=None,
        message="calculate 6*7",
        request_id="",
    )
    limits = RunLimits(max_runs=10**9, rate=1e9, burst=10**9)

    def admit() -> None:
        _prepare_and_admit("triage", {}, draft, local=LocalRuns(run_ids=[]), limits=limits)

    for _ in range(20):
        admit()
    found = []
    for gap in GAPS_MS:
        walls, cpus = [], []
        for _ in range(calls):
            time.sleep(gap / 1000)
            wall, cpu = time.perf_counter(), time.thread_time()
            admit()
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.thread_time() - cpu) * 1000)
        found.append((gap, statistics.median(walls), statistics.median(cpus)))
    return found


def main() -> None:
    """Measure and write the section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=60)
    args = parser.parse_args()
    found = measure(args.calls)
    lines = [
        "## The same work, back to back and after idle gaps",
        "",
        f"`python bench/idle_wake.py --calls {args.calls}` on {machine()}: one admission "
        "(`_prepare_and_admit`, SQLite), the gap slept before each call.",
        "",
        "| idle gap before the call | median wall | median CPU |",
        "|---|---|---|",
    ]
    for gap, wall, cpu in found:
        lines.append(f"| {gap} ms | {wall:.2f} ms | {cpu:.2f} ms |")
        record(f"admission ms after {gap} ms idle", wall)
    body = "\n".join(lines)
    print(body)
    write_section("idle_wake", body)


if __name__ == "__main__":
    main()
