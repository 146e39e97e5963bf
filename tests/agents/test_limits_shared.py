"""Limits and busy threads hold across processes: they are kept in the database."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from agents.control import CANCEL_RUN, process_group
from agents.errors import RateLimited, ThreadBusy, TooManyRuns
from agents.models import Agent, Run, Thread
from chatplatform.process import build_process
from tests.conftest import collect_run, connect_user, open_socket, send

pytestmark = pytest.mark.django_db(transaction=True)

OTHER = "other-host-42-abcdef"


@database_sync_to_async
def run_elsewhere(user, thread=None):
    """A run going in another process (as its row says)."""
    thread = thread or Thread.objects.create(user=user)
    return Run.objects.create(
        user=user,
        agent=Agent.objects.get(name="stepper"),
        thread=thread,
        message="elsewhere",
        status="running",
        process=OTHER,
    )


async def test_reject_sees_a_run_going_in_another_process(amake_user, registry):
    user = await amake_user()
    remote = await run_elsewhere(user)
    session = await registry.get_user_session(user.pk)
    with pytest.raises(ThreadBusy):
        await session.start_run(
            agent_name="triage", message="1+1", thread_id=str(remote.thread_id), on_busy="reject"
        )


async def test_enqueue_waits_for_the_run_in_another_process(amake_user, registry):
    user = await amake_user()
    remote = await run_elsewhere(user)
    comm, _ = await connect_user(user)
    session = await registry.get_user_session(user.pk)
    ref = await session.start_run(
        agent_name="triage", message="calculate 1+1", thread_id=str(remote.thread_id)
    )
    assert await comm.receive_nothing(timeout=0.5)  # still waiting behind the other run
    await Run.objects.filter(pk=remote.pk).aupdate(status="completed")
    events = await collect_run(comm, ref.run_id)
    assert events[0]["type"] == "agent_started" and events[-1]["type"] == "agent_completed"
    await comm.disconnect()


async def test_interrupt_asks_the_other_process_to_cancel(amake_user, registry):
    user = await amake_user()
    remote = await run_elsewhere(user)
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(process_group(OTHER), listener)
    session = await registry.get_user_session(user.pk)
    await session.start_run(
        agent_name="triage", message="x", thread_id=str(remote.thread_id), on_busy="interrupt"
    )
    message = await asyncio.wait_for(layer.receive(listener), 5)
    assert message["type"] == CANCEL_RUN and message["run_id"] == str(remote.pk)
    await Run.objects.filter(pk=remote.pk).aupdate(status="cancelled")


async def test_concurrent_run_limit_counts_runs_in_other_processes(amake_user, registry, settings):
    settings.AGENT_MAX_CONCURRENT_RUNS = 2
    user = await amake_user()
    await run_elsewhere(user)
    await run_elsewhere(user)
    session = await registry.get_user_session(user.pk)
    with pytest.raises(TooManyRuns):
        await session.start_run(agent_name="triage", message="1+1")


async def test_start_rate_is_shared_by_processes(amake_user, settings):
    settings.WS_START_RATE_BURST = 2
    settings.WS_START_RATE_PER_SECOND = 0.1
    user = await amake_user()
    # two processes' registries
    processes = [build_process(), build_process()]
    try:
        on_a, on_b = [await p.registry.get_user_session(user.pk) for p in processes]
        await on_a.start_run(agent_name="triage", message="1+1")
        await on_b.start_run(agent_name="triage", message="1+2")
        with pytest.raises(RateLimited) as limited:
            await on_a.start_run(agent_name="triage", message="1+3")
        with pytest.raises(RateLimited):
            await on_b.start_run(agent_name="triage", message="1+4")
        assert 0 < limited.value.extra["retry_after"] <= 10
    finally:
        for built in processes:
            await built.registry.shutdown()
            built.close()  # its writer's thread and connection, before the test's flush


async def test_connections_per_user_are_limited(amake_user, registry, settings):
    settings.WS_MAX_CONNECTIONS_PER_USER = 2
    user = await amake_user()
    tabs = [(await connect_user(user))[0] for _ in range(2)]
    extra = await open_socket(user.token)
    refused = await extra.receive_json_from(timeout=5)
    assert refused["type"] == "error" and refused["error"]["code"] == "rate_limited"
    assert await extra.receive_output(timeout=5) == {"type": "websocket.close", "code": 4008}
    await tabs[0].disconnect()
    again = await open_socket(user.token)
    assert (await again.receive_json_from(timeout=5))["type"] == "connection_established"
    await send(again, {"type": "ping"})
    assert (await again.receive_json_from(timeout=5))["type"] == "pong"
    await again.disconnect()
    await tabs[1].disconnect()


async def test_simultaneous_connects_cannot_pass_the_limit_together(amake_user, registry, settings):
    # Connects arriving at once are recorded in one transaction and counted together.
    settings.WS_MAX_CONNECTIONS_PER_USER = 3
    user = await amake_user()
    sockets = await asyncio.gather(*(open_socket(user.token) for _ in range(7)))
    firsts = await asyncio.gather(*(s.receive_json_from(timeout=5) for s in sockets))
    kinds = sorted(f["type"] for f in firsts)
    assert kinds == ["connection_established"] * 3 + ["error"] * 4
    assert all(f["error"]["code"] == "rate_limited" for f in firsts if f["type"] == "error")
    for s in sockets:
        await s.disconnect()
