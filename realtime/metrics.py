"""In-process counters of the live event path."""

import threading
from collections import Counter


class Metrics:
    """Thread-safe named counters (events by type, delivery failures, ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def inc(self, name: str, amount: int = 1) -> None:
        """Add `amount` to the counter `name`."""
        with self._lock:
            self._counts[name] += amount

    def get(self, name: str) -> int:
        """Return the value of counter `name`."""
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """Return a copy of every counter."""
        with self._lock:
            return dict(self._counts)


metrics = Metrics()
