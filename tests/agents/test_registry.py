"""AgentRegistry: one session per user, ValueError for bad ids, per-user locking."""

import asyncio

import pytest

from agents.models import AgentSession
from agents.registry import AgentRegistry, parse_user_id

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "bad",
    [None, "", "  ", "abc", "1.5", "-3", 0, -1, True, False, 1.5, "١٢", [1], {"id": 1}],
    ids=repr,
)
def test_malformed_user_ids_raise_value_error(bad):
    with pytest.raises(ValueError):
        parse_user_id(bad)


@pytest.mark.parametrize(("raw", "expected"), [(7, 7), ("7", 7), (" 42 ", 42)], ids=repr)
def test_well_formed_user_ids(raw, expected):
    assert parse_user_id(raw) == expected


async def test_get_user_session_rejects_bad_and_missing_ids(registry, amake_user):
    for bad in (None, "", "x", -5):
        with pytest.raises(ValueError):
            await registry.get_user_session(bad)
    with pytest.raises(ValueError, match="no active user"):
        await registry.get_user_session(999_999)
    assert registry.stats()["sessions"] == 0


async def test_one_session_per_user_even_when_asked_concurrently(amake_user, process):
    user = await amake_user()
    calls = []

    async def counting_factory(uid):
        calls.append(uid)
        await asyncio.sleep(0.05)  # a slow creation widens the race window
        return await process.sessions(uid)

    registry = AgentRegistry(session_factory=counting_factory)
    sessions = await asyncio.gather(*(registry.get_user_session(user.pk) for _ in range(20)))
    assert calls == [user.pk]
    assert all(s is sessions[0] for s in sessions)
    assert await registry.get_user_session(str(user.pk)) is sessions[0]
    assert await AgentSession.objects.filter(user=user).acount() == 1
    await registry.shutdown()


async def test_hundred_users_create_sessions_concurrently_without_one_lock(amake_user, process):
    users = [await amake_user() for _ in range(100)]
    # Every creation waits at a barrier that opens only once all 100 are inside
    # the factory at the same time: a registry-wide lock would deadlock here.
    barrier = asyncio.Barrier(100)

    async def barrier_factory(uid):
        await barrier.wait()
        return await process.sessions(uid)

    registry = AgentRegistry(session_factory=barrier_factory)
    sessions = await asyncio.wait_for(
        asyncio.gather(*(registry.get_user_session(u.pk) for u in users)), timeout=30
    )
    assert [s.user_id for s in sessions] == [u.pk for u in users]
    assert registry.stats()["sessions"] == 100
    await registry.shutdown()


async def test_failed_creation_is_not_cached_and_can_be_retried(amake_user, process):
    user = await amake_user()
    attempts = []

    async def flaky_factory(uid):
        attempts.append(uid)
        if len(attempts) == 1:
            raise RuntimeError("database hiccup")
        return await process.sessions(uid)

    registry = AgentRegistry(session_factory=flaky_factory)
    with pytest.raises(RuntimeError):
        await registry.get_user_session(user.pk)
    session = await registry.get_user_session(user.pk)
    assert session.user_id == user.pk and len(attempts) == 2
    await registry.shutdown()


async def test_cleanup_keeps_a_session_with_runs_unless_told(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    ref = await session.start_run(
        agent_name="stepper", message="go", options={"steps": 50, "delay_ms": 100}
    )
    assert await registry.cleanup_user_session(user.pk) is False
    assert registry.peek(user.pk) is session
    assert await registry.cleanup_user_session(user.pk, cancel_runs=True) is True
    assert registry.peek(user.pk) is None
    row = await AgentSession.objects.aget(pk=session.session_id)
    assert row.status == "ended" and row.ended_at is not None
    from agents.models import Run

    assert (await Run.objects.aget(pk=ref.run_id)).status == "cancelled"


async def test_sweep_idle_ends_only_idle_sessions(amake_user, registry):
    idle_user, busy_user, connected_user = [await amake_user() for _ in range(3)]
    await registry.get_user_session(idle_user.pk)
    busy = await registry.get_user_session(busy_user.pk)
    await busy.start_run(agent_name="stepper", message="go", options={"steps": 50, "delay_ms": 100})
    connected = await registry.get_user_session(connected_user.pk)
    connected.attach()
    assert await registry.sweep_idle(ttl_seconds=0) == 1
    assert registry.peek(idle_user.pk) is None
    assert registry.peek(busy_user.pk) is busy
    assert registry.peek(connected_user.pk) is connected


async def test_concurrent_new_sessions_are_recorded_together_and_a_bad_id_fails_alone(
    amake_user, registry, process
):
    users = [await amake_user() for _ in range(30)]
    calls = []
    handler = process.sessions.opener._handler

    async def counting(keys):
        calls.append(len(keys))
        return await handler(keys)

    process.sessions.opener._handler = counting
    missing = max(u.pk for u in users) + 1000
    results = await asyncio.gather(
        *(registry.get_user_session(u.pk) for u in users),
        registry.get_user_session(missing),
        return_exceptions=True,
    )
    assert isinstance(results[-1], ValueError) and str(missing) in str(results[-1])
    sessions = results[:-1]
    assert [s.user_id for s in sessions] == [u.pk for u in users]
    assert len({s.session_id for s in sessions}) == 30
    # 31 first uses took a single database call, not one each
    assert calls == [31]
    rows = AgentSession.objects.filter(pk__in=[s.session_id for s in sessions])
    assert {row.user_id async for row in rows} == {u.pk for u in users}
    assert registry.peek(missing) is None


async def test_a_session_closed_while_a_run_records_its_end_waits_for_the_record(
    amake_user, registry, process, monkeypatch
):
    # The cancel lands while the run's last event is being stored: close() must
    # still return only once the run's end is in the database (and its writer idle).
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    ending = asyncio.Event()
    write = process.writer.write

    async def slow_last_write(run, event, called_at):
        if event.event_type == "agent_completed":
            ending.set()
            await asyncio.sleep(0.2)
        return await write(run, event, called_at)

    monkeypatch.setattr(process.writer, "write", slow_last_write)
    ref = await session.start_run(agent_name="triage", message="1+1")
    await asyncio.wait_for(ending.wait(), 5)
    await registry.cleanup_user_session(user.pk, cancel_runs=True)
    from agents.models import Run

    run = await Run.objects.aget(pk=ref.run_id)
    assert run.status == "completed" and run.result == "1+1 = 2"
