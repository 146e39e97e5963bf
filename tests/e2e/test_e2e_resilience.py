"""Nothing lost, end to end: reconnect chaos, two processes, Redis restarts, killed processes."""

import asyncio
import os
import random
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from tests.daphne import Daphne, manage, postgres_env, seen, sqlite_env, stored_events
from tests.services import free_port, missing_service, require_postgres, require_redis
from tests.wsclient import AgentClient

pytestmark = pytest.mark.e2e

CHAOS_SEED = 20261125
CHAOS_CYCLES = 60
REDIS_OUTAGE_ERRORS = (
    "live delivery failed",
    "Unexpected exception in receive task",
    "reading the channel layer failed",
)
RELAXED = {
    "WS_START_RATE_PER_SECOND": "100",
    "WS_START_RATE_BURST": "100",
    "AGENT_MAX_CONCURRENT_RUNS": "20",
}


def new_user(env):
    username = f"e2e{uuid.uuid4().hex[:8]}"
    return username, manage(env, "issue_token", username, "--create-user")


async def read_for(client, seconds):
    """Take whatever arrives during `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            client.take(await client.recv(timeout=left))
        except TimeoutError:
            return


async def test_chaos_reconnects_during_stepper_runs_lose_and_repeat_nothing():
    rng = random.Random(CHAOS_SEED)
    with sqlite_env(**RELAXED) as env, Daphne(env) as server:
        username, token = new_user(env)
        client = AgentClient(server.ws_url, token)
        run_ids = set()
        for cycle in range(CHAOS_CYCLES):
            if rng.random() < 0.2:
                # drop the socket in the middle of its resume
                await client.connect(resume=False)
                await client.send({"type": "resume", "payload": {"after_seq": client.last_seq}})
                client.abort()
                continue
            await client.connect()
            if cycle % 4 == 0:
                options = {"steps": rng.randint(3, 12), "delay_ms": rng.choice([0, 10, 40])}
                run_ids.add((await client.start("go", agent="stepper", options=options))["run_id"])
            await read_for(client, rng.uniform(0, 0.3))
            if rng.random() < 0.5:
                client.abort()
            else:
                await client.close()
        await client.connect()
        await client.until_terminal(run_ids)
        await client.close()
        stored = stored_events(env, username)
    assert len(run_ids) >= 10
    assert seen(client.events) == stored
    assert [e[0] for e in stored] == list(range(1, len(stored) + 1))


@pytest.mark.redis
@pytest.mark.postgres
async def test_two_daphne_processes_behave_as_one_service():
    redis_url, pg_url = require_redis(), require_postgres()
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    with postgres_env(pg_url, REDIS_URL=redis_url, CHANNEL_LAYER_PREFIX=prefix, **RELAXED) as env:
        with Daphne(env) as a, Daphne(env) as b:
            username, token = new_user(env)
            on_a, on_b = AgentClient(a.ws_url, token), AgentClient(b.ws_url, token)
            await on_a.connect()
            await on_b.connect()
            # a run started on B reaches the tab on A
            first = await on_b.start("calculate 6*7")
            await on_a.until_terminal({first["run_id"]})
            # runs started on both processes at once: each tab sees one gapless, ordered stream
            runs = [
                await on_a.start("go", agent="stepper", options={"steps": 8, "delay_ms": 5}),
                await on_b.start("go", agent="stepper", options={"steps": 8, "delay_ms": 5}),
                await on_a.start("calculate 2**10"),
                await on_b.start("what time is it"),
            ]
            ids = {r["run_id"] for r in runs} | {first["run_id"]}
            await on_a.until_terminal(ids)
            await on_b.until_terminal(ids)
            # a stop sent to A cancels the run that B is running
            long = await on_b.start("go", agent="stepper", options={"steps": 100, "delay_ms": 50})
            await on_a.send({"type": "stop_agent", "payload": {"run_id": long["run_id"]}})
            await on_a.until_terminal({long["run_id"]})
            await on_b.until_terminal({long["run_id"]})
            stored = stored_events(env, username)
            await on_a.close()
            await on_b.close()
    assert seen(on_a.events) == seen(on_b.events) == stored
    assert [e[0] for e in stored] == list(range(1, len(stored) + 1))
    assert on_a.events[-1]["type"] == "agent_cancelled"


def start_redis(port):
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("redis-server (the binary, to start a private Redis)", "PATH")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("private redis-server did not start")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.redis
async def test_redis_restart_mid_run_loses_nothing_and_live_delivery_comes_back():
    require_redis()
    port = free_port()
    redis = start_redis(port)
    try:
        with sqlite_env(REDIS_URL=f"redis://127.0.0.1:{port}/0", **RELAXED) as env:
            # The outage is an error worth logging; nothing else is.
            with Daphne(env, allow_errors=REDIS_OUTAGE_ERRORS) as server:
                username, token = new_user(env)
                client = AgentClient(server.ws_url, token)
                await client.connect()
                run = await client.start(
                    "go", agent="stepper", options={"steps": 40, "delay_ms": 100}
                )
                await read_for(client, 0.5)
                stop(redis)  # Redis goes away mid-run
                await asyncio.sleep(1.0)
                redis = start_redis(port)  # and comes back on the same address
                await client.until_terminal({run["run_id"]}, timeout=30)
                # new runs are delivered live again, without restarting daphne
                after = await client.start("calculate 6*7")
                await client.until_terminal({after["run_id"]})
                stored = stored_events(env, username)
                await client.close()
                log = server.output()
    finally:
        stop(redis)
    assert seen(client.events) == stored
    assert [e[0] for e in stored] == list(range(1, len(stored) + 1))
    assert "live delivery failed" in log  # the outage was noticed and logged, not silent


async def test_killed_process_run_ends_interrupted_and_the_client_learns_it():
    with sqlite_env(**RELAXED) as env:
        first = Daphne(env).start()
        username, token = new_user(env)
        client = AgentClient(first.ws_url, token)
        await client.connect()
        run = await client.start("go", agent="stepper", options={"steps": 100, "delay_ms": 100})
        await read_for(client, 0.5)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
        client.abort()
        with Daphne(env) as second:
            client.url = second.ws_url
            await client.connect()
            await client.until_terminal({run["run_id"]})
            stored = stored_events(env, username)
            await client.close()
        first.stop()
    assert not first.error_lines()
    assert seen(client.events) == stored
    assert client.events[-1]["type"] == "agent_error"
    assert client.events[-1]["data"]["error"]["code"] == "interrupted"


async def test_sigterm_interrupts_runs_after_the_grace_period():
    with sqlite_env(AGENT_SHUTDOWN_GRACE_SECONDS="0.5", **RELAXED) as env:
        server = Daphne(env).start()
        username, token = new_user(env)
        client = AgentClient(server.ws_url, token)
        await client.connect()
        quick = await client.start("calculate 1+1")
        long = await client.start("go", agent="stepper", options={"steps": 100, "delay_ms": 100})
        await read_for(client, 0.3)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) is not None
        client.abort()
        with Daphne(env) as restarted:
            client.url = restarted.ws_url
            await client.connect()
            await client.until_terminal({quick["run_id"], long["run_id"]})
            stored = stored_events(env, username)
            await client.close()
        server.stop()
    assert not server.error_lines()
    assert seen(client.events) == stored
    ends = {
        e["run_id"]: e for e in client.events if e["type"] in ("agent_completed", "agent_error")
    }
    assert ends[quick["run_id"]]["type"] == "agent_completed"
    assert ends[long["run_id"]]["data"]["error"] == {
        "code": "interrupted",
        "message": "the server is restarting; the run was interrupted",
    }
