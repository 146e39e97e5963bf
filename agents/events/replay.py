"""Reading a user's stored events back as wire frames, page by page."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from agents.events.frames import RunRef, encode_frame, event_envelope
from agents.events.reads import count_between, events_after, frames_after, user_last_seq
from agents.models import RunEvent

PAGE_SIZE = 500


def envelope_of(event: RunEvent) -> dict[str, Any]:
    """Rebuild the wire envelope of a stored event."""
    run = RunRef(str(event.run_id), str(event.run.thread_id), event.run.agent.name)
    return event_envelope(run, event.type, event.seq, event.created_at, event.payload)


def _page(
    user_id: int, after_seq: int, limit: int, through_seq: int | None
) -> list[tuple[int, str]]:
    page = frames_after(user_id=user_id, seq=after_seq, limit=limit, through_seq=through_seq)
    missing = [seq for seq, frame in page if not frame]
    if missing:
        # Stored without a frame (before frames were kept, or written by hand): rebuild.
        rebuilt = {
            e.seq: encode_frame(envelope_of(e))
            for e in events_after(
                user_id=user_id, seq=missing[0] - 1, through_seq=missing[-1], limit=len(page)
            )
        }
        page = [(seq, frame or rebuilt[seq]) for seq, frame in page]
    return page


def _horizon(user_id: int, after_seq: int, last: int | None = None) -> bool:
    if last is None:
        last = user_last_seq(user_id=user_id)
    if last <= after_seq:
        return True
    # Seqs are gapless when allocated; any hole after the cursor is a pruned event.
    return count_between(user_id=user_id, after_seq=after_seq, through_seq=last) == last - after_seq


@dataclass
class Replay:
    """Streams the events after a cursor; with `check_horizon`, tells whether none were pruned."""

    user_id: int
    after_seq: int
    through_seq: int | None = None
    page_size: int = PAGE_SIZE
    check_horizon: bool = False
    # Set with the first page when check_horizon: every event after the cursor still
    # stored? And the user's last seq when it was read.
    recovered: bool | None = None
    user_last_seq: int = 0

    async def frames(self) -> AsyncIterator[tuple[int, str]]:
        """Yield (seq, frame text) for each stored event after the cursor, in order."""
        cursor = self.after_seq
        first = True
        while True:
            if first and self.check_horizon:
                # One database round trip for the horizon and the first page.
                self.recovered, self.user_last_seq, page = await database_sync_to_async(
                    _first_page
                )(self.user_id, cursor, self.page_size, self.through_seq)
            else:
                page = await database_sync_to_async(_page)(
                    self.user_id, cursor, self.page_size, self.through_seq
                )
            first = False
            for seq, text in page:
                yield seq, text
            if len(page) < self.page_size:
                return
            cursor = page[-1][0]


def _first_page(
    user_id: int, after_seq: int, limit: int, through_seq: int | None
) -> tuple[bool, int, list[tuple[int, str]]]:
    page = _page(user_id, after_seq, limit, through_seq)
    last = user_last_seq(user_id=user_id)
    if through_seq is None and len(page) < limit and len(page) == max(0, last - after_seq):
        # The page holds every seq after the cursor: nothing was pruned (no count needed).
        return True, last, page
    return _horizon(user_id, after_seq, last), last, page
