"""Twisted's server transports send on the next loop turn: real sockets through every case."""

import asyncio
import socket
import struct
from typing import Any

import pytest
from twisted.internet import error, protocol, tcp
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.python import failure

from realtime import writesoon


class Served(protocol.Protocol):
    """A server-side connection that records how it ended."""

    made: list["Served"] = []

    def connectionMade(self) -> None:
        self.made.append(self)
        self.lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)


class Server:
    """A Twisted TCP server on the test's own event loop, and a way to reach it."""

    def __init__(self) -> None:
        self.reactor = AsyncioSelectorReactor(asyncio.get_running_loop())
        self.factory = protocol.Factory.forProtocol(Served)
        Served.made.clear()
        self.port = self.reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.registered: list[Any] = []
        add_writer = self.reactor.addWriter

        def counted(transport: Any) -> None:
            self.registered.append(transport)
            add_writer(transport)

        setattr(self.reactor, "addWriter", counted)  # noqa: B010

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Served]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port.getHost().port)
        while not Served.made:
            await asyncio.sleep(0.001)
        return reader, writer, Served.made.pop()


@pytest.fixture
async def server(monkeypatch):
    # install() changes Twisted's class: put it back after each test.
    monkeypatch.setattr(tcp.Server, "startWriting", tcp.Server.startWriting)
    monkeypatch.setattr(tcp.Server, "_chatplatform_replaced_startWriting", False, raising=False)
    assert writesoon.install() is True
    served = Server()
    yield served
    served.port.stopListening()
    for transport in list(writesoon._scheduled):
        writesoon._scheduled.discard(transport)


def count_sends(transport: Any) -> list[int]:
    sizes: list[int] = []
    send = transport.writeSomeData

    def counted(data: Any) -> Any:
        sent = send(data)
        sizes.append(sent if isinstance(sent, int) else -1)
        return sent

    setattr(transport, "writeSomeData", counted)  # noqa: B010
    return sizes


async def test_writes_of_one_turn_leave_in_one_send_without_epoll(server):
    reader, writer, served = await server.connect()
    sends = count_sends(served.transport)
    for i in range(5):
        served.transport.write(b"frame%d;" % i)
    assert sends == []  # not yet: on the next turn, as late as Twisted would send
    assert (
        await asyncio.wait_for(reader.readexactly(35), 10) == b"frame0;frame1;frame2;frame3;frame4;"
    )
    assert sends == [35] and server.registered == []
    served.transport.write(b"again")
    assert await asyncio.wait_for(reader.readexactly(5), 10) == b"again"
    assert sends == [35, 5] and server.registered == []
    writer.close()


async def test_what_the_kernel_does_not_take_waits_for_room_in_order(server):
    reader, writer, served = await server.connect()
    big = b"".join(struct.pack(">I", i) for i in range(2_000_000))  # 8 MB, each 4 bytes its index
    served.transport.write(big)
    await asyncio.sleep(0.05)  # the client reads nothing yet: the rest waits in Twisted
    assert server.registered == [served.transport]
    served.transport.write(b"tail-1")  # written while it waits for room
    served.transport.write(b"tail-2")
    received = await asyncio.wait_for(reader.readexactly(len(big) + 12), 10)
    assert received == big + b"tail-1tail-2"
    await asyncio.sleep(0.01)
    registrations = len(server.registered)
    served.transport.write(b"then")  # room again: back to the next-turn send
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"then"
    assert len(server.registered) == registrations
    writer.close()


async def test_data_written_before_a_close_arrives_then_the_close(server):
    reader, writer, served = await server.connect()
    served.transport.write(b"last words")
    served.transport.loseConnection()
    assert (
        await asyncio.wait_for(reader.read(), 10) == b"last words"
    )  # all of it, then end of stream
    reason = await asyncio.wait_for(served.lost, 5)
    assert reason.check(error.ConnectionDone)
    writer.close()


async def test_an_abort_after_a_write_sends_nothing_and_raises_nothing(server):
    reader, writer, served = await server.connect()
    served.transport.write(b"never")
    served.transport.abortConnection()
    reason = await asyncio.wait_for(served.lost, 5)
    assert reason.check(error.ConnectionAborted)
    await asyncio.sleep(0.01)  # the scheduled flush ran, on a lost connection
    assert not writesoon._scheduled
    with pytest.raises(ConnectionError):
        data = await asyncio.wait_for(reader.read(), 10)
        if data == b"":
            raise ConnectionResetError  # closed without the bytes: also right
    writer.close()


async def test_a_connection_lost_after_a_write_is_left_alone_by_the_flush(server):
    _, writer, served = await server.connect()
    served.transport.write(b"too late")
    # as Twisted does when a read finds the peer gone, in the same turn as the write
    served.transport.connectionLost(failure.Failure(error.ConnectionLost()))
    await asyncio.sleep(0.01)
    assert not writesoon._scheduled and server.registered == []
    writer.close()


async def test_a_peer_that_reset_the_connection_ends_it_on_the_next_write(server):
    _, writer, served = await server.connect()
    client = writer.get_extra_info("socket")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # RST
    await asyncio.sleep(0.05)
    for _ in range(3):  # the first send may still be taken by the kernel
        if served.lost.done():
            break
        served.transport.write(b"x" * 1000)
        await asyncio.sleep(0.05)
    reason = await asyncio.wait_for(served.lost, 5)
    assert reason.check(error.ConnectionLost, error.ConnectionDone)


async def test_install_twice_wraps_once(server):
    wrapped = tcp.Server.startWriting
    assert writesoon.install() is True
    assert tcp.Server.startWriting is wrapped
