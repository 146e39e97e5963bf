"""autobahn's debug log lines, made free while debug logging is off.

autobahn builds the arguments of its debug lines before the (no-op) log call:
every frame it writes formats its own function name and two values in colour
(`hltype`/`hlval`: inspect calls, and click.style when click is installed), and
every new connection pretty-prints its whole configuration (`pformat`). Under
a reconnect storm that was about 9 % of daphne's CPU (py-spy, bench/RESULTS.md).
While autobahn logs below debug, its protocol module gets helpers that return
their argument untouched instead; nothing reads them, since the lines are not
logged. The names swapped are autobahn's own (tests/realtime/test_adapters.py checks
that its protocol module still uses them).
"""

from typing import Any

HELPERS = ("hltype", "hlval", "pformat")


def _untouched(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


def install() -> bool:
    """Swap the helpers while autobahn's debug lines are off; tell whether they were swapped."""
    try:
        import txaio
        from autobahn.websocket import protocol
    except ImportError:
        return False
    try:
        level = txaio.get_global_log_level()  # type: ignore[attr-defined]
    except RuntimeError:  # no framework chosen: autobahn is not serving in this process
        return False
    if level in ("debug", "trace"):
        return False
    for name in HELPERS:
        setattr(protocol, name, _untouched)
    return True
