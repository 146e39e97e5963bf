"""daphne's command line, with the event writer's batches timed (for bench/latency_breakdown.py).

Usage: python -m bench.timed_daphne <daphne arguments>
Wraps the writer's store (on the loop's thread or the writer's) and publish
(on the loop) and keeps, per batch: when it was taken, stored and published,
where it was stored, its size, its oldest and newest event's emit time, and
the storing thread's CPU time for the store. The
first SIGUSR1 clears what was kept (after the warm-up); the second writes it,
with the process's garbage collections (and how long each took), to the JSON file in
TIMED_DAPHNE_OUT.
"""

import gc
import json
import os
import signal
import sys
import time
from typing import Any

BATCHES: list[dict[str, Any]] = []
COLLECTIONS: list[tuple[float, int, float]] = []  # (start, generation, seconds)
_collection_started = 0.0
_armed = False


def _on_signal(signum: int, frame: Any) -> None:
    global _armed
    if not _armed:
        BATCHES.clear()
        COLLECTIONS.clear()
        _armed = True
        return
    with open(os.environ["TIMED_DAPHNE_OUT"], "w") as out:
        json.dump({"batches": BATCHES, "collections": COLLECTIONS}, out)


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    global _collection_started
    if phase == "start":
        _collection_started = time.perf_counter()
    else:
        took = time.perf_counter() - _collection_started
        COLLECTIONS.append((time.time() - took, int(info["generation"]), took))


def install() -> None:
    """Wrap the writer's store and publish steps with timers."""
    from agents.events import writer

    store = writer._store
    store_here = writer.EventWriter._store_here
    finish = writer.EventWriter._finish

    def kept(batch: list[Any], taken: float, cpu: float, where: str) -> None:
        BATCHES.append(
            {
                "taken": taken,
                "stored": time.time(),
                "store_cpu": time.thread_time() - cpu,
                "size": len(batch),
                "oldest": min(p.called_at for p in batch),
                "newest": max(p.called_at for p in batch),
                "where": where,
            }
        )

    def timed_store(batch: list[Any]) -> Any:
        taken, cpu = time.time(), time.thread_time()
        try:
            return store(batch)
        finally:
            kept(batch, taken, cpu, "thread")

    def timed_store_here(self: Any, batch: list[Any]) -> Any:
        taken, cpu = time.time(), time.thread_time()
        outcomes = store_here(self, batch)
        if outcomes is not None:
            kept(batch, taken, cpu, "loop")
        return outcomes

    async def timed_finish(self: Any, batch: list[Any], outcomes: list[Any]) -> None:
        record = BATCHES[-1] if BATCHES else {}
        record["publishing"] = time.time()
        try:
            await finish(self, batch, outcomes)
        finally:
            record["published"] = time.time()

    writer._store = timed_store
    writer.EventWriter._store_here = timed_store_here  # type: ignore[method-assign]
    writer.EventWriter._finish = timed_finish  # type: ignore[method-assign]
    gc.callbacks.append(_on_collection)


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _on_signal)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatplatform.settings")
    import django

    django.setup()
    install()
    from daphne.cli import CommandLineInterface

    sys.argv = ["daphne", *sys.argv[1:]]
    CommandLineInterface.entrypoint()
