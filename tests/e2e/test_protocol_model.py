"""The protocol's delivery promise under random interleavings, against real daphne processes.

`make test` runs a fixed budget of seeds per layout; `bench/protocol_soak.py`
runs many more. A failing seed is in the failure message: replay it with
PROTOCOL_MODEL_SEEDS=<seed> (and PROTOCOL_MODEL_OPERATIONS to match).
"""

import os

import pytest

from tests.protocol_model import Driver, ModelViolation, layout
from tests.services import require_postgres, require_redis

pytestmark = pytest.mark.e2e

SEEDS = [int(s) for s in os.environ.get("PROTOCOL_MODEL_SEEDS", "1,2,3").split(",")]
OPERATIONS = int(os.environ.get("PROTOCOL_MODEL_OPERATIONS", "150"))


async def trial(seed, name, report, redis_url="", postgres_url=""):
    with layout(name, redis_url, postgres_url) as (env, servers):
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
    await trial(seed, "memory", report)


@pytest.mark.redis
@pytest.mark.parametrize("seed", SEEDS[:2])
async def test_model_redis_layer(seed, report):
    await trial(seed, "redis", report, redis_url=require_redis())


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize("seed", SEEDS[:2])
async def test_model_two_processes_sharing_redis_and_postgres(seed, report):
    redis_url, postgres_url = require_redis(), require_postgres()
    await trial(seed, "two-processes", report, redis_url, postgres_url)
