"""What sending on a socket that is already closing raises, whichever server runs us.

A client may leave while an event is on its way to it: the server has seen the
close but the application has not yet been told. The ASGI spec asks servers to
raise an OSError subclass then; daphne (through autobahn) raises autobahn's
`Disconnected`, a RuntimeError. Both mean "this socket is gone", not a failure.
"""

try:
    from autobahn.exception import Disconnected
except ImportError:  # not under daphne
    SOCKET_GONE: tuple[type[BaseException], ...] = (OSError,)
else:
    SOCKET_GONE = (OSError, Disconnected)
