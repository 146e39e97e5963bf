"""Batcher: concurrent calls of the same database operation gathered into one call."""

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from channels.db import database_sync_to_async

K = TypeVar("K")
V = TypeVar("V")


class Batcher(Generic[K, V]):
    """Runs `handler(keys)` once for all keys submitted while the previous call ran.

    The handler maps each key to its value or to the exception for that key
    alone; an exception from the handler itself fails every key of the batch.
    """

    def __init__(self, handler: Callable[[Sequence[K]], dict[K, V | Exception]]) -> None:
        self._handler = database_sync_to_async(handler)
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def submit(self, key: K) -> V:
        """Return the value for `key`, computed in the next batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            await asyncio.sleep(0)  # let the other callers of this tick join the batch
            batch, self._waiting = self._waiting, {}
            try:
                results = await self._handler(list(batch))
            except Exception as exc:
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for key, futures in batch.items():
                outcome = results[key]
                for future in futures:
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
