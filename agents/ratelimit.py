"""A token bucket for the rate at which a user starts runs."""

import time


class TokenBucket:
    """Allows `burst` actions at once and `rate` per second after that."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()

    def take(self) -> float:
        """Take one token; return 0 on success, else the seconds until one is free."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        if self.rate <= 0:
            return float("inf")
        return (1 - self._tokens) / self.rate
