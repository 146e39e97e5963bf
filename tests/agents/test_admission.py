"""Admitting a run: the shared start bucket, the run changes, and how few statements it takes."""

import functools
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Run, StartBucket, Thread
from agents.services.runs import (
    LocalRuns,
    RunDraft,
    RunLimits,
    run_change_apply,
    start_token_take,
)
from agents.session import _prepare_and_admit

pytestmark = pytest.mark.django_db(transaction=True)


# The rates leave a margin of at least half a second between the calls a test
# makes and the moment its bucket would refill, however slow the machine.


def test_a_burst_passes_then_starts_wait_their_turn(make_user):
    user = make_user()
    assert [start_token_take(user_id=user.pk, rate=2, burst=3) for _ in range(3)] == [0, 0, 0]
    wait = start_token_take(user_id=user.pk, rate=2, burst=3)
    assert 0 < wait <= 0.5 + 0.01
    time.sleep(wait + 0.01)
    assert start_token_take(user_id=user.pk, rate=2, burst=3) == 0
    assert start_token_take(user_id=user.pk, rate=2, burst=3) > 0


def test_a_refused_start_takes_nothing(make_user):
    user = make_user()
    assert start_token_take(user_id=user.pk, rate=0.5, burst=1) == 0
    busy_until = StartBucket.objects.get(user=user).busy_until
    for _ in range(5):
        assert start_token_take(user_id=user.pk, rate=0.5, burst=1) > 0
    assert StartBucket.objects.get(user=user).busy_until == busy_until


def test_an_idle_bucket_refills_only_to_its_burst(make_user):
    user = make_user()
    StartBucket.objects.create(user=user, busy_until=time.time() - 3600)
    taken = [start_token_take(user_id=user.pk, rate=1, burst=2) for _ in range(3)]
    assert taken[:2] == [0, 0] and taken[2] > 0


def test_no_rate_or_no_burst_means_no_starts(make_user):
    user = make_user()
    assert start_token_take(user_id=user.pk, rate=0, burst=5) == float("inf")
    assert start_token_take(user_id=user.pk, rate=5, burst=0) == float("inf")
    assert not StartBucket.objects.filter(user=user, busy_until__gt=0).exists()


def new_run(user) -> Run:
    from agents.models import Agent

    thread = Thread.objects.create(user=user)
    return Run.objects.create(
        user=user, agent=Agent.objects.get(name="triage"), thread=thread, message="m"
    )


def test_run_changes_move_only_from_the_states_they_expect(make_user):
    run = new_run(make_user())
    run_change_apply(run_id=str(run.pk), change={"status": "running"})
    run.refresh_from_db()
    assert run.status == "running" and run.started_at is not None
    run_change_apply(run_id=str(run.pk), change={"status": "running", "resumed": True})
    assert Run.objects.get(pk=run.pk).status == "running"  # was not waiting: unchanged
    run_change_apply(run_id=str(run.pk), change={"status": "waiting_input"})
    assert Run.objects.get(pk=run.pk).status == "waiting_input"
    run_change_apply(run_id=str(run.pk), change={"status": "running", "resumed": True})
    assert Run.objects.get(pk=run.pk).status == "running"
    change = {"status": "completed", "result": "42", "input_tokens": 3, "output_tokens": 4}
    run_change_apply(run_id=str(run.pk), change=change)
    run_change_apply(run_id=str(run.pk), change={"status": "failed", "error_code": "x"})
    run.refresh_from_db()
    assert (run.status, run.result, run.error_code) == ("completed", "42", "")
    assert (run.input_tokens, run.output_tokens) == (3, 4) and run.finished_at is not None
    run_change_apply(run_id=str(run.pk), change={"status": "waiting_input"})
    assert Run.objects.get(pk=run.pk).status == "completed"  # an ended run stays ended
    with pytest.raises(TypeError):
        run_change_apply(run_id=str(run.pk), change={"status": "failed", "no_such_field": 1})


def test_a_start_is_five_statements_in_one_transaction_without_savepoints(make_user):
    # The start's latency is mostly these statements (docs/architecture.md): the
    # agent, then in one transaction the run count, the start bucket, the thread
    # and the run.
    user = make_user()
    draft = functools.partial(
        RunDraft,
        user_id=user.pk,
        session_id=None,
        thread_id=None,
        message="calculate 6*7",
        request_id="",
    )
    limits = RunLimits(max_runs=10, rate=100, burst=100)
    _prepare_and_admit("triage", {}, draft, local=LocalRuns(run_ids=[]), limits=limits)
    with CaptureQueriesContext(connection) as queries:
        prepared = _prepare_and_admit(
            "triage", {}, draft, local=LocalRuns(run_ids=[]), limits=limits
        )
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    work = [s for s in statements if s not in {"BEGIN", "COMMIT"}]
    assert work == ["SELECT", "SELECT", "UPDATE", "INSERT", "INSERT"], statements
    assert prepared.run.status == "queued" and prepared.run.agent.name == "triage"
