"""Reading a user's stored events back as wire frames, page by page."""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from agents.batching import Batcher
from agents.events.frames import RunRef, encode_frame, event_envelope
from agents.events.reads import (
    count_between,
    events_after,
    frames_after,
    frames_after_many,
    user_last_seq,
    users_last_seq,
)
from agents.models import RunEvent

PAGE_SIZE = 500


def envelope_of(event: RunEvent) -> dict[str, Any]:
    """Rebuild the wire envelope of a stored event."""
    run = RunRef(str(event.run_id), str(event.run.thread_id), event.run.agent.name)
    return event_envelope(run, event.type, event.seq, event.created_at, event.payload)


def _page(
    user_id: int, after_seq: int, limit: int, through_seq: int | None
) -> list[tuple[int, str]]:
    return _with_frames(
        user_id, frames_after(user_id=user_id, seq=after_seq, limit=limit, through_seq=through_seq)
    )


def _with_frames(user_id: int, page: list[tuple[int, str]]) -> list[tuple[int, str]]:
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


# A replay's first page: (user, cursor, page size, through seq) -> (nothing after
# the cursor pruned?, the user's last seq, the page's (seq, frame) pairs).
FirstPageKey = tuple[int, int, int, int | None]
FirstPage = tuple[bool, int, list[tuple[int, str]]]
FirstPageReader = Callable[[int, int, int, int | None], Awaitable[FirstPage]]


async def first_page_alone(
    user_id: int, after_seq: int, limit: int, through_seq: int | None
) -> FirstPage:
    """Read one replay's first page in a database call of its own."""
    return await database_sync_to_async(_first_page)(user_id, after_seq, limit, through_seq)


def first_pages_read(keys: Sequence[FirstPageKey]) -> dict[FirstPageKey, FirstPage | Exception]:
    """Read the first pages of several replays in two queries; a page that fails fails alone."""
    try:
        found = frames_after_many(keys)
        last = users_last_seq(sorted({key[0] for key in keys}))
    except Exception:
        # Together they failed: each is read alone, so that only one that fails fails.
        return _each_alone(keys)
    pages: dict[FirstPageKey, FirstPage | Exception] = {}
    for key, page in zip(keys, found, strict=True):
        try:
            pages[key] = _first_page_of(key, _with_frames(key[0], page), last[key[0]])
        except Exception as exc:
            pages[key] = exc
    return pages


def _each_alone(keys: Sequence[FirstPageKey]) -> dict[FirstPageKey, FirstPage | Exception]:
    pages: dict[FirstPageKey, FirstPage | Exception] = {}
    for key in keys:
        try:
            pages[key] = _first_page(*key)
        except Exception as exc:
            pages[key] = exc
    return pages


class FirstPages:
    """The process's reader of replays' first pages: those asked for at once share one call.

    A crowd reconnecting at once (a deploy, a network blip) resumes at once;
    each resume in a database call of its own paid the thread hop, Django's
    connection checks and PostgreSQL's health-check round trip every time.
    """

    def __init__(self) -> None:
        self._batcher: Batcher[FirstPageKey, FirstPage] = Batcher(first_pages_read)

    async def __call__(
        self, user_id: int, after_seq: int, limit: int, through_seq: int | None
    ) -> FirstPage:
        """Return the first page, read with the others asked for meanwhile."""
        return await self._batcher.submit((user_id, after_seq, limit, through_seq))


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
    # How the first page is read when check_horizon: alone, or with others (FirstPages).
    first_page: FirstPageReader = first_page_alone

    async def frames(self) -> AsyncIterator[tuple[int, str]]:
        """Yield (seq, frame text) for each stored event after the cursor, in order."""
        cursor = self.after_seq
        first = True
        while True:
            if first and self.check_horizon:
                # One database call for the horizon and the first page.
                self.recovered, self.user_last_seq, page = await self.first_page(
                    self.user_id, cursor, self.page_size, self.through_seq
                )
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
    return _first_page_of(
        (user_id, after_seq, limit, through_seq), page, user_last_seq(user_id=user_id)
    )


def _first_page_of(key: FirstPageKey, page: list[tuple[int, str]], last: int) -> FirstPage:
    """The first page with its horizon, given the page and the user's last seq read after it."""
    user_id, after_seq, limit, through_seq = key
    if through_seq is None and len(page) < limit and len(page) == max(0, last - after_seq):
        # The page holds every seq after the cursor: nothing was pruned (no count needed).
        return True, last, page
    return _horizon(user_id, after_seq, last), last, page
