"""InlineStore: small batches stored on the loop's thread (SQLite), or left to the writer thread."""

import asyncio
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from agents.events.frames import RunRef, encode_frame
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


def counter_seq(user_id):
    return UserEventCounter.objects.get(user_id=user_id).last_seq


@database_sync_to_async
def give_counter(user):
    UserEventCounter.objects.get_or_create(user=user)


@database_sync_to_async
def run_row(ref):
    return Run.objects.values("status", "result", "started_at", "finished_at").get(pk=ref.run_id)


@dataclass
class Stream:
    """A user with a run, and a real EventWriter with an InlineStore, publishing to a list."""

    user: Any
    ref: RunRef
    writer: EventWriter
    published: list[StoredEvent] = field(default_factory=list)

    def event(self, delta, run_id=None, event_type="partial_result", change=None):
        data = {"delta": delta} if delta is not None else {}
        return NewEvent(self.user.pk, run_id or self.ref.run_id, event_type, data, change)

    def write(self, delta, **kwargs):
        return self.writer.write(self.ref, self.event(delta, **kwargs), 0.0)

    def published_seqs(self):
        return [e.seq for e in self.published]

    async def stored_seqs(self):
        return [seq for seq, _, _ in await stored(self.user.pk)]


@pytest.fixture
async def stream_for(amake_user):
    """Make Streams (by default the user already has a counter row); close their writers."""
    writers = []

    async def make(*, counter=True, inline=None):
        user = await amake_user()
        ref = await make_run(user)
        if counter:
            await give_counter(user)
        published: list[StoredEvent] = []

        async def publish(events):
            published.extend(events)

        writer = EventWriter(publish=publish, inline=inline or InlineStore())
        writers.append(writer)
        return Stream(user, ref, writer, published)

    yield make
    for writer in writers:
        await database_sync_to_async(writer.close)()


async def test_small_batches_are_stored_on_the_loop_gapless_and_as_sent(stream_for):
    s = await stream_for()
    envelopes = [await s.write(str(i)) for i in range(5)]
    envelopes += await asyncio.gather(*(s.write(str(i)) for i in range(5, 10)))
    assert s.writer.inline_batches == s.writer.batches >= 2
    rows = await stored(s.user.pk)
    assert [seq for seq, _, _ in rows] == list(range(1, 11))
    assert [payload["delta"] for _, payload, _ in rows] == [str(i) for i in range(10)]
    assert [frame for _, _, frame in rows] == [encode_frame(e) for e in envelopes]
    assert s.published_seqs() == list(range(1, 11))


async def test_a_held_write_lock_sends_the_batch_to_the_writer_thread_in_order(stream_for):
    s = await stream_for()
    await s.write("before")
    # Another connection (another process, a command) holds the write lock a while.
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        inline_before = s.writer.inline_batches
        writes = asyncio.gather(*(s.write(str(i)) for i in range(3)))
        await asyncio.sleep(0.3)
        assert not writes.done()  # the writer thread waits for the lock; the loop does not
    finally:
        other.execute("ROLLBACK")
        other.close()
    await asyncio.wait_for(writes, 10)
    assert s.writer.inline_batches == inline_before  # none of these went inline
    assert await s.stored_seqs() == [1, 2, 3, 4]
    assert s.published_seqs() == [1, 2, 3, 4]
    await s.write("after")
    assert s.writer.inline_batches == inline_before + 1  # the lock is free again: inline


async def test_a_failing_event_leaves_nothing_inline_and_fails_alone(stream_for, caplog):
    s = await stream_for()
    no_run = str(uuid.uuid4())  # the foreign key fails: the inline transaction rolls back
    results = await asyncio.gather(
        s.write("a"), s.write("b", run_id=no_run), s.write("c"), return_exceptions=True
    )
    # the batch was tried inline, declined (said once), and stored by the writer thread
    declined = [r for r in caplog.records if r.name == "agents.events.inline"]
    assert [r.levelname for r in declined] == ["WARNING"]
    assert s.writer.inline_batches == 0
    assert isinstance(results[1], Exception)
    assert [r["data"]["delta"] for r in (results[0], results[2])] == ["a", "c"]
    rows = await stored(s.user.pk)
    assert [(seq, payload["delta"]) for seq, payload, _ in rows] == [(1, "a"), (2, "c")]
    assert s.published_seqs() == [1, 2]
    # the frames stored are those of the thread's numbering, not the declined attempt's
    assert [frame for _, _, frame in rows] == [encode_frame(results[0]), encode_frame(results[2])]


async def test_a_first_event_makes_its_counter_inline_and_a_big_batch_goes_to_the_thread(
    stream_for,
):
    s = await stream_for(counter=False)  # no counter row yet: the batch's upsert makes it
    await s.write("first")
    assert s.writer.inline_batches == 1
    assert await database_sync_to_async(counter_seq)(s.user.pk) == 1
    await asyncio.gather(*(s.write(str(i)) for i in range(INLINE_MAX + 1)))
    assert s.writer.inline_batches == 1
    assert await s.stored_seqs() == list(range(1, INLINE_MAX + 3))
    assert await database_sync_to_async(counter_seq)(s.user.pk) == INLINE_MAX + 2


async def test_run_changes_commit_inline_with_their_events(stream_for):
    s = await stream_for()

    def change(event_type, run_change):
        return s.write(None, event_type=event_type, change=run_change)

    await asyncio.gather(change("agent_started", {"status": "running"}), s.write("x"))
    started = await run_row(s.ref)
    assert started["status"] == "running" and started["started_at"] is not None
    await change("input_requested", {"status": "waiting_input"})
    assert (await run_row(s.ref))["status"] == "waiting_input"
    await change("input_resolved", {"status": "running", "resumed": True})
    assert (await run_row(s.ref))["status"] == "running"
    await change("agent_completed", {"status": "completed", "result": "42"})
    # an ended run keeps its first outcome, inline as on the thread
    await change("agent_error", {"status": "failed", "error_code": "x"})
    ended = await run_row(s.ref)
    assert (ended["status"], ended["result"]) == ("completed", "42")
    assert ended["finished_at"] is not None
    assert s.writer.inline_batches == s.writer.batches == 5
    assert await s.stored_seqs() == [1, 2, 3, 4, 5, 6]


async def test_a_store_that_cannot_open_its_database_leaves_every_batch_to_the_thread(
    stream_for, tmp_path, caplog
):
    # a directory is no database: connecting fails, every time
    s = await stream_for(inline=InlineStore(str(tmp_path)))
    for i in range(3):
        await s.write(str(i))
    assert s.writer.inline_batches == 0 and s.writer.batches == 3
    assert await s.stored_seqs() == [1, 2, 3]
    assert s.published_seqs() == [1, 2, 3]
    warnings = [r for r in caplog.records if r.name == "agents.events.inline"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"  # said once, not per batch
