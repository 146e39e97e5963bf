"""Resume: stored events after a cursor, interleaved with live ones without gaps or repeats."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from agents.events.store import events_prune
from agents.models import Run, RunEvent, UserEventCounter
from tests.agents.events.test_emitter import make_run
from tests.conftest import collect_run, connect_user, send, serve_new_process, start

pytestmark = pytest.mark.django_db(transaction=True)


async def resume(comm, after_seq, request_id="res"):
    """Send resume and return (replayed events, resume_complete), skipping live frames."""
    await send(
        comm, {"type": "resume", "request_id": request_id, "payload": {"after_seq": after_seq}}
    )
    frames = []
    while True:
        frame = await comm.receive_json_from(timeout=10)
        if frame["type"] == "resume_complete":
            return frames, frame
        frames.append(frame)


class Client:
    """What a protocol-abiding client keeps: events in order, ignoring seq <= last seen."""

    def __init__(self, last_seq=0):
        self.last_seq = last_seq
        self.events = []

    def take(self, frame):
        if "seq" in frame and frame["seq"] > self.last_seq:
            self.events.append(frame)
            self.last_seq = frame["seq"]


async def stored_seqs(user):
    return [
        s
        async for s in RunEvent.objects.filter(user=user)
        .order_by("seq")
        .values_list("seq", flat=True)
    ]


async def test_resume_replays_everything_after_the_cursor_in_order(amake_user, registry):
    user = await amake_user()
    comm, _ = await connect_user(user)
    accepted = await start(comm, "calculate 6*7")
    live = await collect_run(comm, accepted["run_id"])
    replayed, done = await resume(comm, live[2]["seq"])
    assert replayed == live[3:]
    assert done == {
        "type": "resume_complete",
        "request_id": "res",
        "last_seq": live[-1]["seq"],
        "recovered": True,
    }
    nothing, done = await resume(comm, live[-1]["seq"])
    assert nothing == [] and done["last_seq"] == live[-1]["seq"] and done["recovered"] is True
    await comm.disconnect()


async def make_backlog(user, n):
    """Store n events of a run of the user's, seqs 1..n, without their frames (rebuilt on read)."""
    ref = await make_run(user)

    @database_sync_to_async
    def backlog():
        now = timezone.now()
        RunEvent.objects.bulk_create(
            RunEvent(
                user=user,
                run_id=ref.run_id,
                seq=i,
                type="partial_result",
                payload={"delta": str(i), "user": user.pk},
                created_at=now,
            )
            for i in range(1, n + 1)
        )
        UserEventCounter.objects.update_or_create(user=user, defaults={"last_seq": n})

    await backlog()


async def test_large_backlog_is_streamed_completely_in_pages(amake_user, registry):
    user = await amake_user()
    await make_backlog(user, 1234)  # more than two pages of 500
    comm, hello = await connect_user(user)
    assert hello["last_seq"] == 1234
    replayed, done = await resume(comm, 0)
    assert [e["seq"] for e in replayed] == list(range(1, 1235))
    assert [e["data"]["delta"] for e in replayed[:3]] == ["1", "2", "3"]
    assert done["last_seq"] == 1234 and done["recovered"] is True
    await comm.disconnect()


async def test_resume_says_not_recovered_when_retention_pruned_part(amake_user, registry):
    user = await amake_user()
    comm, _ = await connect_user(user)
    first = await start(comm, "calculate 1+1")
    first_events = await collect_run(comm, first["run_id"])
    second = await start(comm, "calculate 2+2")
    second_events = await collect_run(comm, second["run_id"])
    # the first run's events age past retention and are pruned
    await RunEvent.objects.filter(run_id=first["run_id"]).aupdate(
        created_at=timezone.now() - timedelta(days=40)
    )
    pruned = await database_sync_to_async(events_prune)(
        older_than=timezone.now() - timedelta(days=30)
    )
    assert pruned == len(first_events)
    replayed, done = await resume(comm, 0)
    assert replayed == second_events
    assert done["recovered"] is False
    _, done = await resume(comm, first_events[-1]["seq"])
    assert done["recovered"] is True  # nothing after this cursor was pruned
    await comm.disconnect()


async def test_prune_keeps_events_of_runs_still_going(amake_user, registry):
    user = await amake_user()
    comm, _ = await connect_user(user)
    accepted = await start(comm, "go", agent="stepper", options={"steps": 30, "delay_ms": 50})
    await comm.receive_json_from(timeout=5)
    await RunEvent.objects.filter(run_id=accepted["run_id"]).aupdate(
        created_at=timezone.now() - timedelta(days=99)
    )
    assert await database_sync_to_async(events_prune)(older_than=timezone.now()) == 0
    await registry.shutdown()
    await comm.disconnect()


async def test_events_emitted_during_a_replay_are_neither_lost_nor_repeated(amake_user, registry):
    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    ref = await make_run(user)
    for i in range(600):
        await session.emitter.emit(ref, "partial_result", {"delta": f"old{i}"})
    comm, _ = await connect_user(user)
    client = Client(last_seq=0)

    async def emit_live():
        for i in range(200):
            await session.emitter.emit(ref, "partial_result", {"delta": f"new{i}"})
            await asyncio.sleep(0)

    live = asyncio.create_task(emit_live())
    await send(comm, {"type": "resume", "payload": {"after_seq": 0}})
    # As docs/protocol.md asks: hold what comes before resume_complete, apply it in seq order
    # (live events sent before the server read the resume may precede older replayed ones).
    held = []
    while True:
        frame = await comm.receive_json_from(timeout=10)
        if frame["type"] == "resume_complete":
            break
        held.append(frame)
    for frame in sorted(held, key=lambda f: f["seq"]):
        client.take(frame)
    await live
    # drain whatever live frames remain queued
    while len(client.events) < 800:
        client.take(await comm.receive_json_from(timeout=10))
    assert await comm.receive_nothing(timeout=0.2)
    assert [e["seq"] for e in client.events] == await stored_seqs(user)
    await comm.disconnect()


async def test_run_outlives_its_sockets_and_the_user_catches_up(amake_user, registry):
    user = await amake_user()
    comm, _ = await connect_user(user)
    accepted = await start(comm, "go", agent="stepper", options={"steps": 10, "delay_ms": 30})
    client = Client()
    for _ in range(3):
        client.take(await comm.receive_json_from(timeout=5))
    await comm.disconnect()  # every tab of the user is gone

    await registry.peek(user.pk).wait_run(accepted["run_id"])
    run = await Run.objects.aget(pk=accepted["run_id"])
    assert run.status == "completed"

    comm, _ = await connect_user(user)
    replayed, done = await resume(comm, client.last_seq)
    for frame in replayed:
        client.take(frame)
    assert [e["seq"] for e in client.events] == await stored_seqs(user)
    assert client.events[-1]["type"] == "agent_completed"
    assert done["last_seq"] == client.last_seq
    await comm.disconnect()


async def test_events_missing_from_the_live_stream_are_filled_from_storage(amake_user, registry):
    from prometheus_client import REGISTRY

    from agents.events.store import event_record

    user = await amake_user()
    session = await registry.get_user_session(user.pk)
    ref = await make_run(user)
    comm, hello = await connect_user(user)
    await session.emitter.emit(ref, "partial_result", {"delta": "a"})
    # stored but never published: what happens while the layer (Redis) is down
    for delta in ("b", "c"):
        await database_sync_to_async(event_record)(
            user_id=user.pk, run_id=ref.run_id, event_type="partial_result", data={"delta": delta}
        )
    before = REGISTRY.get_sample_value("chatplatform_gap_fills_total")
    await session.emitter.emit(ref, "partial_result", {"delta": "d"})
    frames = [await comm.receive_json_from(timeout=5) for _ in range(4)]
    assert [f["data"]["delta"] for f in frames] == ["a", "b", "c", "d"]
    assert [f["seq"] for f in frames] == list(range(hello["last_seq"] + 1, hello["last_seq"] + 5))
    assert REGISTRY.get_sample_value("chatplatform_gap_fills_total") == before + 1
    await comm.disconnect()


def test_prune_events_command(seeded, capsys):
    from django.core.management import call_command

    call_command("prune_events", "--older-than", "30")
    assert capsys.readouterr().out.strip() == "deleted 0 events older than 30 days"
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("prune_events", "--older-than", "-1")


@pytest.fixture
async def first_page_calls(monkeypatch):
    """Serve a process whose first-page reads are recorded (the users of each call).

    The first call lingers, as a busy database thread would.
    """
    import time

    from agents.events import replay

    calls = []
    read = replay.first_pages_read

    def recorded(keys):
        calls.append(sorted(key[0] for key in keys))
        if len(calls) == 1:
            time.sleep(0.5)  # the other resumes queue up meanwhile
        return read(keys)

    monkeypatch.setattr(replay, "first_pages_read", recorded)
    served = serve_new_process()  # its FirstPages reads through `recorded`
    yield calls
    await served.registry.shutdown()
    await served.inbox.close()


async def test_sockets_resuming_at_once_share_one_database_call(amake_user, first_page_calls):
    users = [await amake_user() for _ in range(6)]
    for n, user in enumerate(users):
        await make_backlog(user, 3 + n)
    # one user's retention pruned an event: that user alone is told so
    await database_sync_to_async(RunEvent.objects.filter(user=users[2], seq=2).delete)()
    sockets = [(await connect_user(user))[0] for user in users]
    results = await asyncio.gather(*(resume(comm, 0) for comm in sockets))
    for n, (user, (replayed, done)) in enumerate(zip(users, results, strict=True)):
        expected = [s for s in range(1, 4 + n) if not (user is users[2] and s == 2)]
        assert [e["seq"] for e in replayed] == expected
        assert {e["data"]["user"] for e in replayed} == {user.pk}
        assert done["last_seq"] == 3 + n
        assert done["recovered"] is (user is not users[2])
    # at most two calls: the first resume's (perhaps alone), then all that came while it ran
    assert len(first_page_calls) <= 2, first_page_calls
    assert sorted(pk for call in first_page_calls for pk in call) == sorted(u.pk for u in users)
    for comm in sockets:
        await comm.disconnect()


def test_first_pages_read_together_fail_alone_when_the_combined_read_fails(monkeypatch):
    from agents.events import replay

    def together(keys):
        raise RuntimeError("the combined read failed")

    def page(user_id, after_seq, limit, through_seq):
        if user_id == 2:
            raise RuntimeError("storage down")
        return True, 0, []

    monkeypatch.setattr(replay, "frames_after_many", together)
    monkeypatch.setattr(replay, "_first_page", page)  # each read alone, then
    pages = replay.first_pages_read([(1, 0, 500, None), (2, 0, 500, None)])
    assert pages[(1, 0, 500, None)] == (True, 0, [])
    assert isinstance(pages[(2, 0, 500, None)], RuntimeError)


def test_a_first_page_that_fails_after_the_combined_read_fails_alone(monkeypatch):
    from agents.events import replay

    monkeypatch.setattr(replay, "frames_after_many", lambda keys: [[(1, "{}")], [(1, "{}")]])
    monkeypatch.setattr(replay, "users_last_seq", lambda ids: {1: 1, 2: 5})

    def horizon(user_id, after_seq, last):
        raise RuntimeError("storage down")  # only asked for user 2's: its page is short

    monkeypatch.setattr(replay, "_horizon", horizon)
    pages = replay.first_pages_read([(1, 0, 500, None), (2, 0, 500, None)])
    assert pages[(1, 0, 500, None)] == (True, 1, [(1, "{}")])
    assert isinstance(pages[(2, 0, 500, None)], RuntimeError)
