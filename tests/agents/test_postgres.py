"""PostgreSQL: migrations apply and seq allocation is safe across processes."""

import subprocess
import sys
import time

import pytest

from tests.daphne import ROOT, postgres_env
from tests.services import require_postgres

pytestmark = pytest.mark.postgres

WORKERS = 4
PER_WORKER = 150


def worker(env, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.seq_worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_seq_is_unique_gapless_and_increasing_across_processes():
    with postgres_env(require_postgres()) as env:
        setup = worker(env, "setup")
        out, err = setup.communicate(timeout=60)
        assert setup.returncode == 0, err
        user_id, run_id = out.split()
        start_at = str(time.time() + 3)
        procs = [
            worker(env, f"w{i}", user_id, run_id, str(PER_WORKER), start_at) for i in range(WORKERS)
        ]
        per_worker = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            per_worker.append([int(s) for s in out.split()])
    # each process saw its own seqs strictly increase, and together they are 1..N exactly
    for seqs in per_worker:
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) == PER_WORKER
    assert sorted(s for seqs in per_worker for s in seqs) == list(
        range(1, WORKERS * PER_WORKER + 1)
    )
    # and they did contend: some worker's seqs were interleaved with another's
    assert any(seqs[-1] - seqs[0] + 1 > PER_WORKER for seqs in per_worker)
