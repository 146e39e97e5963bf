"""The adapters' one shared step: replacing a method of a library class, once.

backpressure.py, inputqueue.py, textframes.py and writesoon.py each replace one
method of daphne's or Twisted's classes with a wrapper around the original.
`replace_once` does that and marks the class, so that installing twice (a
second import of the ASGI module, a test) never wraps a wrapper.
"""

from collections.abc import Callable
from typing import Any

Method = Callable[..., Any]


def replace_once(owner: type, name: str, wrap: Callable[[Method], Method]) -> None:
    """Set `owner.name` to `wrap(the method there now)`, unless this already replaced it."""
    marker = f"_chatplatform_replaced_{name}"
    if vars(owner).get(marker, False):
        return
    setattr(owner, name, wrap(getattr(owner, name)))
    setattr(owner, marker, True)
