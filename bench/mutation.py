"""Mutation testing of the delivery path, each mutant in a fresh test process.

Usage: python bench/mutation.py [--workers 2] [--only realtime.stream,realtime.hub]
1. `mutmut run` generates the mutants of the modules in pyproject's
   [tool.mutmut] and maps each function to the tests that call it; it is
   stopped once that is done. Its own runner forks one warm test process per
   mutant, and forked processes lose the event writer's and asgiref's threads,
   so its verdicts here are wrong (it reports a log-message mutant killed that
   its tests pass in a fresh process).
2. This script runs each mutant's tests in a new pytest process (the mutant
   chosen by MUTANT_UNDER_TEST, as mutmut does), stopping at the first failure:
   a failure kills the mutant, a pass lets it survive, no test means no coverage.
Prints the figures and every survivor's diff, and writes them to
bench/mutation-results.md.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
PYTHON = sys.executable
TIMEOUT = 120


def generate() -> None:
    """Run mutmut until its mutants and stats exist, then stop it."""
    stats = MUTANTS / "mutmut-stats.json"
    stats.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [str(Path(PYTHON).parent / "mutmut"), "run", "--max-children", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not stats.exists():
            if proc.poll() is not None:
                raise SystemExit("mutmut run ended before it collected stats")
            time.sleep(1)
        time.sleep(2)
    finally:
        proc.terminate()
        proc.wait()


def mutants(only: str) -> list[str]:
    """Return every generated mutant's name."""
    names = []
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        names += json.loads(meta.read_text())["exit_code_by_key"]
    prefixes = tuple(only.split(","))
    return [n for n in names if n.startswith(prefixes)]


def tests_of(name: str, by_function: dict[str, list[str]]) -> list[str]:
    """Return the tests that call the function a mutant changes."""
    function = name.rsplit("__mutmut_", 1)[0]
    return sorted(by_function.get(function, []))


async def verdict(name: str, tests: list[str], slots: asyncio.Semaphore) -> str:
    """Run a mutant's tests in a fresh process; return killed, survived or timeout."""
    if not tests:
        return "no tests"
    async with slots:
        proc = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            *tests,
            cwd=MUTANTS,
            env={**os.environ, "MUTANT_UNDER_TEST": name},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            code = await asyncio.wait_for(proc.wait(), TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return "timeout"
    return "survived" if code == 0 else "killed"


def diff(name: str) -> str:
    """Return mutmut's diff of one mutant."""
    shown = subprocess.run(
        [str(Path(PYTHON).parent / "mutmut"), "show", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return "\n".join(line for line in shown.stdout.splitlines() if line.startswith(("-", "+", "@")))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--only",
        default="",
        help="mutant name prefixes, comma-separated, e.g. realtime.stream,realtime.hub",
    )
    parser.add_argument("--reuse", action="store_true", help="keep mutants/ from a previous run")
    args = parser.parse_args()
    if not args.reuse:
        generate()
    by_function = json.loads((MUTANTS / "mutmut-stats.json").read_text())[
        "tests_by_mangled_function_name"
    ]
    names = mutants(args.only)
    slots = asyncio.Semaphore(args.workers)
    started = time.monotonic()
    results = await asyncio.gather(*(verdict(n, tests_of(n, by_function), slots) for n in names))
    outcome = dict(zip(names, results, strict=True))
    counts = Counter(results)
    per_module: dict[str, Counter[str]] = {}
    for name, result in outcome.items():
        per_module.setdefault(name.split(".x")[0], Counter())[result] += 1
    lines = [
        f"{len(names)} mutants: {counts['killed']} killed, {counts['survived']} survived, "
        f"{counts['timeout']} timed out, {counts['no tests']} not covered by a test "
        f"({time.monotonic() - started:.0f} s)",
        "",
        "| module | mutants | killed | survived | timeout | no tests |",
        "|---|---|---|---|---|---|",
    ]
    for module, c in sorted(per_module.items()):
        lines.append(
            f"| {module} | {sum(c.values())} | {c['killed']} | {c['survived']} "
            f"| {c['timeout']} | {c['no tests']} |"
        )
    survivors = [n for n, r in outcome.items() if r in {"survived", "no tests"}]
    lines += ["", "## Survivors", ""]
    for name in survivors:
        lines += [f"### {name} ({outcome[name]})", "```diff", diff(name), "```", ""]
    report = "\n".join(lines)
    print(report)
    (ROOT / "bench" / "mutation-results.md").write_text(
        "# Mutation run of the delivery path\n\n`python bench/mutation.py`\n\n" + report + "\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
