"""Process duties: orphaned runs end `interrupted`, draining interrupts, control cancels."""

import os
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from agents.control import CANCEL_RUN, process_group
from agents.models import Agent, Run, Thread, WorkerProcess
from agents.services import HOST, PROCESS_NAME
from chatplatform.lifecycle import ORPHAN_MESSAGE, SHUTDOWN_MESSAGE
from tests.conftest import collect_run, connect_user, start

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def orphan_run(user, *, process, status="running", beat_age=None, pid=None, host="elsewhere"):
    if beat_age is not None:
        WorkerProcess.objects.update_or_create(
            name=process,
            defaults={
                "last_beat_at": timezone.now() - timedelta(seconds=beat_age),
                "host": host,
                "pid": pid,
            },
        )
    thread = Thread.objects.create(user=user)
    return Run.objects.create(
        user=user,
        agent=Agent.objects.get(name="stepper"),
        thread=thread,
        message="left behind",
        status=status,
        process=process,
    )


@pytest.fixture
async def lifecycle(process):
    lc = process.lifecycle
    yield lc
    if lc.started and not lc.stopped:
        await lc.shutdown()


async def test_runs_of_a_dead_process_end_interrupted_and_the_user_learns_it(
    amake_user, registry, lifecycle, settings
):
    settings.PROCESS_STALE_SECONDS = 30
    user = await amake_user()
    silent = await orphan_run(user, process="host-a-1-aaaaaa", beat_age=120)
    unknown = await orphan_run(user, process="host-b-2-bbbbbb", status="queued")
    comm, _ = await connect_user(user)

    assert await lifecycle.sweep_orphans() == 2

    for run in (silent, unknown):
        events = await collect_run(comm, str(run.pk))
        assert [e["type"] for e in events] == ["agent_started", "agent_error"]
        assert events[1]["data"] == {"error": {"code": "interrupted", "message": ORPHAN_MESSAGE}}
        refreshed = await Run.objects.aget(pk=run.pk)
        assert (refreshed.status, refreshed.error_code) == ("interrupted", "interrupted")
    # a second sweep (or another process sweeping too) changes nothing
    assert await lifecycle.sweep_orphans() == 0
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()


async def test_an_orphans_input_requests_are_resolved_before_its_end(
    amake_user, registry, lifecycle, settings
):
    from agents.events.store import event_record
    from agents.models import InputRequest

    user = await amake_user()
    run = await orphan_run(user, process="host-d-4-dddddd", status="waiting_input", beat_age=120)

    @database_sync_to_async
    def ask(interrupt_id, **decided):
        InputRequest.objects.create(
            id=interrupt_id,
            run=run,
            user=user,
            kind="question",
            message="?",
            expires_at=timezone.now() + timedelta(minutes=5),
            **decided,
        )
        data = {"interrupt_id": interrupt_id, "kind": "question", "message": "?"}
        event_record(
            user_id=user.pk,
            run_id=str(run.pk),
            event_type="input_requested",
            data={**data, "expires_at": "2026-01-01T00:00:00Z"},
        )

    await database_sync_to_async(event_record)(
        user_id=user.pk, run_id=str(run.pk), event_type="agent_started", data={"message": "m"}
    )
    # One the user answered just before the process died (its run never said so),
    await ask("in_answered", outcome="answered", decided_by="user", response={"answer": "42"})
    # and one nobody answered.
    await ask("in_pending")
    comm, _ = await connect_user(user)
    assert await lifecycle.sweep_orphans() == 1
    frames = [await comm.receive_json_from(timeout=5) for _ in range(3)]
    assert [(f["type"], f["data"].get("interrupt_id")) for f in frames] == [
        ("input_resolved", "in_answered"),
        ("input_resolved", "in_pending"),
        ("agent_error", None),
    ]
    assert frames[0]["data"] == {
        "interrupt_id": "in_answered",
        "outcome": "answered",
        "by": "user",
        "answer": "42",
    }
    assert frames[1]["data"] == {
        "interrupt_id": "in_pending",
        "outcome": "interrupted",
        "by": "shutdown",
    }
    assert (await InputRequest.objects.aget(pk="in_pending")).decided_by == "shutdown"
    await comm.disconnect()


async def test_runs_of_a_live_process_are_left_alone(amake_user, registry, lifecycle):
    user = await amake_user()
    alive = await orphan_run(
        user, process="host-c-3-cccccc", beat_age=1, pid=os.getpid(), host=HOST
    )
    assert await lifecycle.sweep_orphans() == 0
    assert (await Run.objects.aget(pk=alive.pk)).status == "running"


async def test_a_dead_pid_on_this_host_is_detected_without_waiting(amake_user, registry, lifecycle):
    user = await amake_user()
    import subprocess

    # the pid of a process that has exited
    done = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    run = await orphan_run(
        user, process="this-host-dead", beat_age=0, pid=int(done.stdout), host=HOST
    )
    assert await lifecycle.sweep_orphans() == 1
    assert (await Run.objects.aget(pk=run.pk)).status == "interrupted"


async def test_drain_lets_short_runs_finish_and_interrupts_long_ones(
    amake_user, registry, settings
):
    user = await amake_user()
    comm, _ = await connect_user(user)
    short = await start(comm, "calculate 1+1")
    long = await start(comm, "go", agent="stepper", options={"steps": 100, "delay_ms": 100})
    left = await registry.drain(grace_seconds=0.5, reason=SHUTDOWN_MESSAGE)
    assert left == 1
    short_events = await collect_run(comm, short["run_id"])
    long_events = await collect_run(comm, long["run_id"])
    assert short_events[-1]["type"] == "agent_completed"
    assert long_events[-1]["type"] == "agent_error"
    assert long_events[-1]["data"]["error"] == {"code": "interrupted", "message": SHUTDOWN_MESSAGE}
    assert (await Run.objects.aget(pk=long["run_id"])).status == "interrupted"
    assert registry.draining
    await comm.disconnect()


async def test_new_connections_are_turned_away_with_4012_while_draining(amake_user, registry):
    from tests.conftest import open_socket

    user = await amake_user()
    registry.draining = True
    comm = await open_socket(user.token)
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4012}


async def test_control_message_cancels_a_local_run(amake_user, registry, lifecycle):
    user = await amake_user()
    comm, _ = await connect_user(user)
    await lifecycle.start()
    accepted = await start(comm, "go", agent="stepper", options={"steps": 100, "delay_ms": 50})
    await get_channel_layer().group_send(
        process_group(PROCESS_NAME),
        {
            "type": CANCEL_RUN,
            "run_id": accepted["run_id"],
            "user_id": user.pk,
            "reason": "stopped elsewhere",
        },
    )
    events = await collect_run(comm, accepted["run_id"])
    assert events[-1]["type"] == "agent_cancelled"
    assert events[-1]["data"] == {"reason": "stopped elsewhere"}
    await comm.disconnect()


async def test_lifecycle_start_beats_and_shutdown_marks_the_process_stopped(
    registry, lifecycle, seeded
):
    await lifecycle.start()
    row = await WorkerProcess.objects.aget(name=PROCESS_NAME)
    assert row.stopped_at is None and row.host == HOST and row.pid == os.getpid()
    await lifecycle.shutdown()
    row = await WorkerProcess.objects.aget(name=PROCESS_NAME)
    assert row.stopped_at is not None


async def test_stop_of_a_run_in_another_process_is_sent_to_that_process(amake_user, registry):
    user = await amake_user()
    run = await orphan_run(user, process="other-proc-9-abcdef", beat_age=0)
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(process_group("other-proc-9-abcdef"), listener)
    comm, _ = await connect_user(user)
    await comm.send_json_to({"type": "stop_agent", "payload": {"run_id": str(run.pk)}})
    message = await layer.receive(listener)
    assert message == {
        "type": CANCEL_RUN,
        "run_id": str(run.pk),
        "user_id": user.pk,
        "reason": "stopped by user",
    }
    assert await comm.receive_nothing(timeout=0.2)  # no error: the other process answers
    await comm.disconnect()
