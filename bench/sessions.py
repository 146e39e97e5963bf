"""Creating many users' agent sessions at once: 1,000 new users, concurrently, in one process.

Usage: python bench/sessions.py [--users 1000] [--repeat 3]
Each database (SQLite, then PostgreSQL when reachable) gets a fresh, migrated
database and a child process that creates the users, then times
`AgentRegistry.get_user_session` called for all of them at once (the factory
records each session and builds it with its emitter), as many new users'
first connections arriving together would.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(users: int, repeat: int) -> None:
    """Inside a child process with the database configured: measure and print JSON."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from agents.registry import AgentRegistry
    from chatplatform.process import build_process

    timings = []
    for round_ in range(repeat):
        model = get_user_model()
        created = model.objects.bulk_create(
            model(username=f"s{round_}-{i}-{time.time_ns()}") for i in range(users)
        )
        ids = (
            [u.pk for u in created]
            if created[0].pk
            else list(model.objects.order_by("-pk").values_list("pk", flat=True)[:users])
        )
        process = build_process()
        registry = process.registry

        async def create_all(registry: AgentRegistry = registry, ids: list[int] = ids) -> float:
            started = time.perf_counter()
            sessions = await asyncio.gather(*(registry.get_user_session(uid) for uid in ids))
            elapsed = time.perf_counter() - started
            assert len({s.session_id for s in sessions}) == len(ids)
            assert all(s.emitter.user_id == s.user_id for s in sessions)
            return elapsed

        timings.append(asyncio.run(create_all()))
        process.close()
    print(json.dumps(timings))


def measure(label: str, env: dict[str, str], args) -> str:
    """Run the child under `env` and return a table row."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--users",
            str(args.users),
            "--repeat",
            str(args.repeat),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    timings = json.loads(done.stdout.strip().splitlines()[-1])
    line = (
        f"| {label} | {args.users:,} | {statistics.median(timings) * 1000:,.0f} "
        f"| {max(timings) * 1000:,.0f} | {args.users / statistics.median(timings):,.0f} |"
    )
    print(line, flush=True)
    return line


def main() -> None:
    """Measure on SQLite and PostgreSQL and write the section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.users, args.repeat)
        return

    from bench.results import machine, write_section
    from tests.daphne import postgres_env, sqlite_env
    from tests.services import POSTGRES_URL, reachable

    rows = []
    with sqlite_env(LOG_LEVEL="WARNING") as env:
        rows.append(measure("SQLite", env, args))
    note = ""
    if reachable(POSTGRES_URL, 5432):
        with postgres_env(POSTGRES_URL, LOG_LEVEL="WARNING") as env:
            rows.append(measure("PostgreSQL", env, args))
    else:
        note = f"PostgreSQL was not reachable at {POSTGRES_URL}: no row for it.\n\n"
    write_section(
        "sessions",
        "\n".join(
            [
                "## Many new users' sessions at once",
                "",
                f"`python bench/sessions.py --users {args.users} --repeat {args.repeat}` on "
                f"{machine()}. `get_user_session` for {args.users:,} users who have none yet, "
                "all at once in one process (each recorded in the database and built with its "
                f"emitter); median and worst of {args.repeat}.",
                "",
                note + "| database | sessions | median ms | worst ms | sessions/s |",
                "|---|---|---|---|---|",
                *rows,
            ]
        ),
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
