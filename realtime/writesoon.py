"""Sending what a socket was given in one loop turn without asking epoll first.

Twisted's TCP transport does not send on `write()`: it registers the socket for
writability with the event loop (an `epoll_ctl`), waits for epoll to report it,
sends from a logged callback, then unregisters it (a second `epoll_ctl`). A
socket with room in its kernel buffer, which is nearly every socket nearly
always, is writable already. `install` makes a server transport's
`startWriting` schedule one flush for the next turn of the loop instead
(`call_soon`), as late as Twisted would have sent, so the frames written in one
turn still leave in one `send()`. The flush is Twisted's own `doWrite`. What
does not fit in the kernel's buffer, a failed send and a close still end on
Twisted's path: the socket is registered for writing, as before.
tests/realtime/test_writesoon.py drives real sockets through each case, and
tests/realtime/test_adapters.py fails when the Twisted code it relies on changes.
"""

from typing import Any

from realtime.patching import Method, replace_once

# Transports with a flush scheduled: one per transport per turn, however many
# writes it gets (a set here, not an attribute: nothing added to idle sockets).
_scheduled: set[Any] = set()


def _pending(transport: Any) -> bool:
    return bool(len(transport.dataBuffer) > transport.offset or transport._tempDataLen)


def install() -> bool:
    """Make Twisted's server transports send on the next turn; tell whether Twisted was there."""
    try:
        from twisted.internet import tcp
    except ImportError:
        return False

    def sending_soon(register: Method) -> Method:  # Twisted's: reactor.addWriter(self)
        def flush(transport: Any) -> None:
            _scheduled.discard(transport)
            if not transport.connected:
                return  # lost or aborted meanwhile: nothing is sent after that
            try:
                why = transport.doWrite()
            except Exception:
                why = True
            if why or _pending(transport):
                # Short of room: the reactor calls doWrite again once there is some.
                # A failed send, or a close (doWrite reports both): the reactor's
                # doWrite reports it again and ends the connection its usual way.
                register(transport)

        def start_writing(self: Any) -> None:
            if self in _scheduled:
                return
            loop = getattr(self.reactor, "_asyncioEventloop", None)
            if loop is None or len(self.dataBuffer) > self.offset:
                register(self)  # not the asyncio reactor, or registered already, waiting for room
                return
            loop.call_soon(flush, self)  # first: a loop that refuses leaves nothing marked
            _scheduled.add(self)

        return start_writing

    replace_once(tcp.Server, "startWriting", sending_soon)
    return True
