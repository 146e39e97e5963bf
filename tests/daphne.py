"""A real daphne subprocess on a free port, with its own database, for end-to-end tests."""

import atexit
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
# A line of the server's log that says something went wrong (JSON or plain format).
ERROR_LINE = re.compile(
    r'"level": "(ERROR|CRITICAL)"|\b(ERROR|CRITICAL)\b|Traceback|Exception inside'
)


def project_env(**overrides: str) -> dict[str, str]:
    """Return an environment for the project's processes (production settings module)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="chatplatform.settings",
        PYTHONUNBUFFERED="1",
        STATIC_FROM_FINDERS="1",
    )
    env.update(overrides)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run a manage.py command in a subprocess and return its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


@contextlib.contextmanager
def sqlite_env(**overrides: str) -> Iterator[dict[str, str]]:
    """Yield an environment with a fresh, migrated SQLite database."""
    with tempfile.TemporaryDirectory(prefix="cp-e2e-") as tmp:
        env = project_env(SQLITE_PATH=str(Path(tmp) / "db.sqlite3"), STATIC_ROOT=tmp, **overrides)
        manage(env, "migrate", "--noinput")
        yield env


@contextlib.contextmanager
def postgres_env(admin_url: str, **overrides: str) -> Iterator[dict[str, str]]:
    """Yield an environment with a fresh, migrated PostgreSQL database, dropped afterwards."""
    import psycopg

    name = f"cp_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    # A static root of its own: whitenoise walks the whole tree at start-up, and the
    # shared temporary directory can hold anything (other checkouts, browser profiles).
    static_root = tempfile.TemporaryDirectory(prefix="cp-static-")
    try:
        env = project_env(DATABASE_URL=f"{base}/{name}", STATIC_ROOT=static_root.name, **overrides)
        manage(env, "migrate", "--noinput")
        yield env
    finally:
        static_root.cleanup()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def shared_services(
    postgres_url: str, redis_url: str, processes: int = 2, **overrides: str
) -> Iterator[tuple[dict[str, str], list["Daphne"]]]:
    """Yield an env on a fresh PostgreSQL database and Redis (a channel prefix of its own),
    and `processes` daphnes serving it: the production layout without the proxy."""
    prefix = f"shared{uuid.uuid4().hex[:8]}"
    with (
        postgres_env(
            postgres_url, REDIS_URL=redis_url, CHANNEL_LAYER_PREFIX=prefix, **overrides
        ) as env,
        contextlib.ExitStack() as stack,
    ):
        yield env, [stack.enter_context(Daphne(env)) for _ in range(processes)]


class Daphne:
    """A daphne process serving chatplatform.asgi:application on 127.0.0.1."""

    def __init__(
        self,
        env: dict[str, str],
        *args: str,
        allow_errors: tuple[str, ...] = (),
        module: str = "daphne",
    ) -> None:
        self.env = env
        self.args = args
        # What `python -m` runs: daphne, or a bench's wrapper around daphne's CLI.
        self.module = module
        # Error lines a test provokes on purpose (by a phrase each contains); any other
        # error line fails the test when the server is left (see __exit__).
        self.allow_errors = allow_errors
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="daphne-", suffix=".log", delete=False)
        # Removed on leaving the `with` block; a server started and stopped by
        # hand (the restart tests read its log after stop()) at the process's exit.
        atexit.register(Path(self.log.name).unlink, missing_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """Return the base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """Return the agents WebSocket URL."""
        return f"ws://127.0.0.1:{self.port}/ws/agents/"

    def start(self) -> "Daphne":
        """Start daphne and wait until /healthz answers."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                *self.args,
                "chatplatform.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"daphne did not become healthy:\n{self.output()}")

    def stop(self) -> None:
        """Stop the process we started (by its PID) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def output(self) -> str:
        """Return what daphne printed."""
        return Path(self.log.name).read_text(errors="replace")

    def __enter__(self) -> "Daphne":
        return self.start()

    def error_lines(self) -> list[str]:
        """Return the lines of the log that report an error nobody asked for."""
        return [
            line
            for line in self.output().splitlines()
            if ERROR_LINE.search(line) and not any(a in line for a in self.allow_errors)
        ]

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        try:
            if exc_type is None:
                bad = self.error_lines()
                assert not bad, "the server logged errors:\n" + "\n".join(bad[:10])
        finally:
            Path(self.log.name).unlink(missing_ok=True)


def stored_events(
    env: dict[str, str], username: str
) -> list[tuple[int, str, str, dict[str, object]]]:
    """Read a user's stored events straight from the database: (seq, type, run_id, data)."""
    import json
    import sqlite3

    query = (
        "SELECT e.seq, e.type, e.run_id, e.payload FROM agents_runevent e "
        "JOIN auth_user u ON u.id = e.user_id WHERE u.username = {p} ORDER BY e.seq"
    )
    if env.get("DATABASE_URL"):
        import psycopg

        with psycopg.connect(env["DATABASE_URL"]) as conn:
            rows = conn.execute(query.format(p="%s"), (username,)).fetchall()
    else:
        with contextlib.closing(sqlite3.connect(env["SQLITE_PATH"])) as conn:
            rows = conn.execute(query.format(p="?"), (username,)).fetchall()
    return [
        (
            int(seq),
            kind,
            str(uuid.UUID(str(run_id))),
            json.loads(data) if isinstance(data, str) else data,
        )
        for seq, kind, run_id, data in rows
    ]


def seen(events: list[dict[str, object]]) -> list[tuple[object, object, object, object]]:
    """Project client events onto what stored_events returns."""
    return [(e["seq"], e["type"], e["run_id"], e["data"]) for e in events]


BACKLOG_SCRIPT = """
from django.contrib.auth import get_user_model
from agents.models import Agent, Run, Thread
from agents.events.store import NewEvent
from agents.events.frames import RunRef
from agents.events.writer import store_now
delta = {delta!r}
for username in {usernames!r}:
    user = get_user_model().objects.get(username=username)
    thread = Thread.objects.create(user=user)
    run = Run.objects.create(user=user, agent=Agent.objects.get(name="stepper"), thread=thread,
                             message="backlog", status="completed")
    ref = RunRef(str(run.pk), str(thread.pk), "stepper")
    done = 0
    while done < {count}:
        size = min(2000, {count} - done)
        store_now(ref, [NewEvent(user.pk, ref.run_id, "partial_result",
                                 {{"delta": delta.replace("%d", str(done + i + 1))}})
                        for i in range(size)])
        done += size
"""


def seed_backlog(env: dict[str, str], username: str | list[str], count: int, delta: str) -> None:
    """Store `count` partial_result events for each user (`%d` in delta becomes the seq)."""
    usernames = [username] if isinstance(username, str) else username
    manage(
        env,
        "shell",
        "-c",
        BACKLOG_SCRIPT.format(usernames=usernames, count=count, delta=delta),
    )
