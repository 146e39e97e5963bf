"""Small batches stored on the event loop's own thread (SQLite), when the write lock is free.

At a few thousand events a second the writer's batches are small (2-4
events), and handing each one to the writer thread and back cost more than
storing it: two thread wake-ups and the GIL passed back and forth per batch
(bench/RESULTS.md has the figures). So a small batch, with the run changes
its events carry, is stored right here, on a plain sqlite3 connection of its own that never waits:
its busy timeout is 0, so when another connection holds the write lock, or
anything else goes wrong, nothing of the batch is kept and it goes to the
writer thread as before (which waits for the lock, and isolates a failing
event). Django refuses database calls on a thread running an event loop
because they could block it; this connection cannot wait for a lock, and
writes a small batch to the page cache (synchronous=NORMAL: no fsync at
commit; checkpoints are the process's checkpointer's, as for every connection,
unless SQLITE_CHECKPOINT_SECONDS=0 asks SQLite to do them in commits).
"""

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import connection

from agents.events.store import FrameEncoder, NewEvent, events_record_on
from agents.sql import QmarkCursor

logger = logging.getLogger(__name__)

# Batches up to this size are tried here; bigger ones (under load) go to the
# writer thread, whose SQLite work runs beside the loop's instead of in it.
INLINE_MAX = 32


class InlineStore:
    """Stores a small batch in the loop's thread, or declines it (None) for the writer thread."""

    def __init__(self, database: str | None = None) -> None:
        # None: the default database's file, read at first use (after the tests make theirs).
        self._database = database
        self._db: sqlite3.Connection | None = None
        self._warned = False

    def store(
        self, events: Sequence[NewEvent], encode: FrameEncoder
    ) -> list[tuple[int, datetime, str]] | None:
        """Store the events in one transaction now, as events_record does; None if not here.

        Never raises: whatever goes wrong here, the writer thread stores the batch.
        """
        if len(events) > INLINE_MAX:
            return None
        try:
            db = self._connection()
            if db is None:
                return None
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # mostly: another connection is writing
            self._declined(exc)
            return None
        try:
            # The same work as on the writer thread.
            stored = events_record_on(QmarkCursor(db.cursor()), "sqlite", events, encode)
            db.execute("COMMIT")
            return stored
        except Exception as exc:
            self._roll_back(db)
            self._declined(exc)
            return None

    def close(self) -> None:
        """Close the connection (any thread, once the writer has stopped)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def _roll_back(self, db: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        if db.in_transaction:
            # Still holding the write lock would stall every other writer: let go of it.
            self.close()

    def _connection(self) -> sqlite3.Connection | None:
        if self._database is None:
            self._database = _database_file()
        if self._db is None and self._database:
            db = sqlite3.connect(
                self._database,
                timeout=0,
                isolation_level=None,
                check_same_thread=False,  # made on one thread, used by the writer's loop
                uri=self._database.startswith("file:"),
            )
            try:
                wal = _set_up(db)
            except sqlite3.Error:
                db.close()  # tried again with the next batch
                raise
            if not wal:
                # Without WAL a writer blocks readers: keep every write on the writer thread.
                db.close()
                self._database = ""
                return None
            self._db = db
        return self._db

    def _declined(self, exc: Exception) -> None:
        if _locked(exc) or self._warned:
            logger.debug("a batch went to the writer thread: %r", exc)
            return
        self._warned = True
        logger.warning("storing a batch on the loop failed; the writer thread stores it: %r", exc)


def _set_up(db: sqlite3.Connection) -> bool:
    """Set the connection up as the project's own; return False if the database is not WAL."""
    if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        return False
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = NORMAL")
    # As the project's connections (settings.sqlite_database): with the process's
    # checkpointer on, none in a commit; without it, SQLite's own, in commits.
    pages = 0 if settings.SQLITE_CHECKPOINT_SECONDS else 1000
    db.execute(f"PRAGMA wal_autocheckpoint = {pages}")
    return True


def _locked(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _database_file() -> str:
    """Return the default database's file if it is SQLite in a file; else ''."""
    name = str(connection.settings_dict.get("NAME") or "")
    if connection.vendor != "sqlite" or name == ":memory:" or "mode=memory" in name:
        return ""
    return name
