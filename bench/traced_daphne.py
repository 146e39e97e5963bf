"""daphne's command line, with Python's allocation tracing switched on by signals.

Usage (by bench/socket_memory.py): python -m bench.traced_daphne <daphne arguments>
The first SIGUSR1 starts tracemalloc (after the warm-up, so imports and
first-use allocations are not traced) and writes an empty baseline; the second
writes a snapshot of everything allocated since and still alive, to the path in
TRACED_DAPHNE_SNAPSHOT.
"""

import gc
import os
import signal
import sys
import tracemalloc
from typing import Any

from daphne.cli import CommandLineInterface

FRAMES = 10


def _on_signal(signum: int, frame: Any) -> None:
    gc.collect()
    if not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)
        return
    tracemalloc.take_snapshot().dump(os.environ["TRACED_DAPHNE_SNAPSHOT"])


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _on_signal)
    sys.argv = ["daphne", *sys.argv[1:]]
    CommandLineInterface.entrypoint()
