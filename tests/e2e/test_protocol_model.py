"""The protocol's delivery promise under random interleavings, against real daphne processes.

`make test` runs a fixed budget of seeds per layout; `bench/protocol_soak.py`
runs many more. A failing seed is in the failure message: replay it with
PROTOCOL_MODEL_SEEDS=<seed> (and PROTOCOL_MODEL_OPERATIONS to match).
"""

import os
import uuid

import pytest

from tests.daphne import Daphne, postgres_env, sqlite_env
from tests.protocol_model import MODEL_LIMITS, Driver, ModelViolation
from tests.services import require_postgres, require_redis

pytestmark = pytest.mark.e2e

SEEDS = [int(s) for s in os.environ.get("PROTOCOL_MODEL_SEEDS", "1,2,3").split(",")]
OPERATIONS = int(os.environ.get("PROTOCOL_MODEL_OPERATIONS", "150"))


async def trial(seed, env, servers, report):
    try:
        done = await Driver(seed, env, servers, OPERATIONS).run()
    except ModelViolation as broken:
        raise AssertionError(
            f"seed {seed} broke the protocol (replay: PROTOCOL_MODEL_SEEDS={seed} "
            f"PROTOCOL_MODEL_OPERATIONS={OPERATIONS}): {broken}"
        ) from None
    report(done.summary())


@pytest.fixture
def report(capsys):
    def say(line):
        with capsys.disabled():
            print(f"\n[protocol model] {line}")

    return say


@pytest.mark.parametrize("seed", SEEDS)
async def test_model_in_memory_layer(seed, report):
    with sqlite_env(**MODEL_LIMITS) as env, Daphne(env) as server:
        await trial(seed, env, [server], report)


@pytest.mark.redis
@pytest.mark.parametrize("seed", SEEDS[:2])
async def test_model_redis_layer(seed, report):
    redis_url = require_redis()
    prefix = f"model{uuid.uuid4().hex[:8]}"
    with (
        sqlite_env(REDIS_URL=redis_url, CHANNEL_LAYER_PREFIX=prefix, **MODEL_LIMITS) as env,
        Daphne(env) as server,
    ):
        await trial(seed, env, [server], report)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize("seed", SEEDS[:2])
async def test_model_two_processes_sharing_redis_and_postgres(seed, report):
    redis_url, pg_url = require_redis(), require_postgres()
    prefix = f"model{uuid.uuid4().hex[:8]}"
    with (
        postgres_env(
            pg_url, REDIS_URL=redis_url, CHANNEL_LAYER_PREFIX=prefix, **MODEL_LIMITS
        ) as env,
        Daphne(env) as first,
        Daphne(env) as second,
    ):
        await trial(seed, env, [first, second], report)
