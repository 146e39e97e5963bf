"""InlineStore: small batches stored on the loop's thread (SQLite), or left to the writer thread."""

import asyncio
import sqlite3
import uuid

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from agents.events.frames import encode_frame
from agents.events.inline import INLINE_MAX, InlineStore
from agents.events.store import NewEvent
from agents.events.writer import EventWriter, StoredEvent
from agents.models import Run, RunEvent, UserEventCounter
from tests.agents.events.test_emitter import make_run

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the inline store is SQLite's"),
]


@database_sync_to_async
def stored(user_id):
    return list(
        RunEvent.objects.filter(user_id=user_id)
        .order_by("seq")
        .values_list("seq", "payload", "frame")
    )


@database_sync_to_async
def give_counter(user):
    UserEventCounter.objects.get_or_create(user=user)


def writer_with_inline():
    published: list[StoredEvent] = []

    async def publish(events):
        published.extend(events)

    return EventWriter(publish=publish, inline=InlineStore()), published


def event(user, ref, delta, run_id=None):
    return NewEvent(user.pk, run_id or ref.run_id, "partial_result", {"delta": delta})


async def test_small_batches_are_stored_on_the_loop_gapless_and_as_sent(amake_user):
    user = await amake_user()
    ref = await make_run(user)
    await give_counter(user)
    writer, published = writer_with_inline()
    envelopes = [await writer.write(ref, event(user, ref, str(i)), 0.0) for i in range(5)]
    envelopes += await asyncio.gather(
        *(writer.write(ref, event(user, ref, str(i)), 0.0) for i in range(5, 10))
    )
    assert writer.inline_batches == writer.batches >= 2
    rows = await stored(user.pk)
    assert [seq for seq, _, _ in rows] == list(range(1, 11))
    assert [payload["delta"] for _, payload, _ in rows] == [str(i) for i in range(10)]
    assert [frame for _, _, frame in rows] == [encode_frame(e) for e in envelopes]
    assert [e.seq for e in published] == list(range(1, 11))
    await database_sync_to_async(writer.close)()


async def test_a_held_write_lock_sends_the_batch_to_the_writer_thread_in_order(amake_user):
    user = await amake_user()
    ref = await make_run(user)
    await give_counter(user)
    writer, published = writer_with_inline()
    await writer.write(ref, event(user, ref, "before"), 0.0)
    # Another connection (another process, a command) holds the write lock a while.
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    inline_before = writer.inline_batches
    writes = asyncio.gather(*(writer.write(ref, event(user, ref, str(i)), 0.0) for i in range(3)))
    await asyncio.sleep(0.3)
    assert not writes.done()  # the writer thread waits for the lock; the loop does not
    other.execute("ROLLBACK")
    other.close()
    await asyncio.wait_for(writes, 10)
    assert writer.inline_batches == inline_before  # none of these went inline
    assert [seq for seq, _, _ in await stored(user.pk)] == [1, 2, 3, 4]
    assert [e.seq for e in published] == [1, 2, 3, 4]
    await writer.write(ref, event(user, ref, "after"), 0.0)
    assert writer.inline_batches == inline_before + 1  # the lock is free again: inline
    await database_sync_to_async(writer.close)()


async def test_a_failing_event_leaves_nothing_inline_and_fails_alone(amake_user):
    user = await amake_user()
    ref = await make_run(user)
    await give_counter(user)
    writer, published = writer_with_inline()
    no_run = str(uuid.uuid4())  # the foreign key fails: the inline transaction rolls back
    results = await asyncio.gather(
        writer.write(ref, event(user, ref, "a"), 0.0),
        writer.write(ref, event(user, ref, "b", run_id=no_run), 0.0),
        writer.write(ref, event(user, ref, "c"), 0.0),
        return_exceptions=True,
    )
    assert isinstance(results[1], Exception)
    assert [r["data"]["delta"] for r in (results[0], results[2])] == ["a", "c"]
    rows = await stored(user.pk)
    assert [(seq, payload["delta"]) for seq, payload, _ in rows] == [(1, "a"), (2, "c")]
    assert [e.seq for e in published] == [1, 2]
    # the frames stored are those of the thread's numbering, not the declined attempt's
    assert [frame for _, _, frame in rows] == [encode_frame(results[0]), encode_frame(results[2])]
    await database_sync_to_async(writer.close)()


async def test_a_first_event_and_a_big_batch_go_to_the_writer_thread(amake_user):
    user = await amake_user()  # no counter row yet: the writer thread makes it
    ref = await make_run(user)
    writer, _ = writer_with_inline()
    await writer.write(ref, event(user, ref, "first"), 0.0)
    assert writer.inline_batches == 0
    many = [writer.write(ref, event(user, ref, str(i)), 0.0) for i in range(INLINE_MAX + 1)]
    await asyncio.gather(*many)
    assert writer.inline_batches == 0
    assert [seq for seq, _, _ in await stored(user.pk)] == list(range(1, INLINE_MAX + 3))
    await database_sync_to_async(writer.close)()


@database_sync_to_async
def run_row(ref):
    return Run.objects.values("status", "result", "started_at", "finished_at").get(pk=ref.run_id)


async def test_run_changes_commit_inline_with_their_events(amake_user):
    user = await amake_user()
    ref = await make_run(user)
    await give_counter(user)
    writer, _ = writer_with_inline()

    def changing(event_type, change):
        return NewEvent(user.pk, ref.run_id, event_type, {}, change)

    await asyncio.gather(
        writer.write(ref, changing("agent_started", {"status": "running"}), 0.0),
        writer.write(ref, event(user, ref, "x"), 0.0),
    )
    started = await run_row(ref)
    assert started["status"] == "running" and started["started_at"] is not None
    await writer.write(ref, changing("input_requested", {"status": "waiting_input"}), 0.0)
    assert (await run_row(ref))["status"] == "waiting_input"
    await writer.write(ref, changing("input_resolved", {"status": "running", "resumed": True}), 0.0)
    assert (await run_row(ref))["status"] == "running"
    done = {"status": "completed", "result": "42"}
    await writer.write(ref, changing("agent_completed", done), 0.0)
    # an ended run keeps its first outcome, inline as on the thread
    await writer.write(ref, changing("agent_error", {"status": "failed", "error_code": "x"}), 0.0)
    ended = await run_row(ref)
    assert (ended["status"], ended["result"]) == ("completed", "42")
    assert ended["finished_at"] is not None
    assert writer.inline_batches == writer.batches == 5
    assert [seq for seq, _, _ in await stored(user.pk)] == [1, 2, 3, 4, 5, 6]
    await database_sync_to_async(writer.close)()


async def test_a_store_that_cannot_open_its_database_leaves_every_batch_to_the_thread(
    amake_user, tmp_path, caplog
):
    user = await amake_user()
    ref = await make_run(user)
    await give_counter(user)
    published = []

    async def publish(events):
        published.extend(events)

    # a directory is no database: connecting fails, every time
    writer = EventWriter(publish=publish, inline=InlineStore(str(tmp_path)))
    for i in range(3):
        await writer.write(ref, event(user, ref, str(i)), 0.0)
    assert writer.inline_batches == 0 and writer.batches == 3
    assert [seq for seq, _, _ in await stored(user.pk)] == [1, 2, 3]
    assert [e.seq for e in published] == [1, 2, 3]
    warnings = [r for r in caplog.records if r.name == "agents.events.inline"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"  # said once, not per batch
    await database_sync_to_async(writer.close)()
