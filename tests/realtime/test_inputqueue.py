"""InputQueue behaves as asyncio.Queue does, under any interleaving of puts, gets and cancels."""

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.inputqueue import InputQueue, install

# A program: put a message, start a reader, cancel the n-th reader still waiting,
# or let the loop run a turn. Run against both queues, it must give the same trace.
steps = st.lists(
    st.one_of(
        st.just(("put",)),
        st.just(("read",)),
        st.tuples(st.just("cancel"), st.integers(0, 2)),
        st.just(("turn",)),
    ),
    max_size=16,
)


async def trace(queue: Any, program: list[tuple[Any, ...]]) -> list[tuple[int, object]]:
    """Run `program` on `queue`; return what each reader got, in the order it finished."""
    finished: list[tuple[int, object]] = []
    readers: list[asyncio.Task[Any]] = []
    sent = 0

    def finisher(index: int) -> Any:
        def done(task: asyncio.Task[Any]) -> None:
            finished.append((index, "cancelled" if task.cancelled() else task.result()))

        return done

    for step in program:
        if step[0] == "put":
            sent += 1
            queue.put_nowait(sent)
        elif step[0] == "read":
            task = asyncio.ensure_future(queue.get())
            task.add_done_callback(finisher(len(readers)))
            readers.append(task)
        elif step[0] == "cancel":
            waiting = [task for task in readers if not task.done()]
            if waiting:
                waiting[step[1] % len(waiting)].cancel()
        else:
            await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    # and whatever no reader took is still there, in order
    left = []
    while True:
        try:
            left.append(await asyncio.wait_for(queue.get(), 0.001))
        except TimeoutError:
            return finished + [(-1, value) for value in left]


@settings(max_examples=500, deadline=None)
@given(steps)
def test_every_interleaving_gives_what_asyncio_queue_gives(program: list[tuple[Any, ...]]) -> None:
    expected = asyncio.run(trace(asyncio.Queue(), program))
    assert asyncio.run(trace(InputQueue(), program)) == expected


def test_a_reader_woken_then_cancelled_passes_the_message_on() -> None:
    async def scenario() -> list[object]:
        queue = InputQueue()
        first = asyncio.ensure_future(queue.get())
        second = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        queue.put_nowait("m")  # wakes the first reader
        first.cancel()  # before it ran: the message must go to the second
        cancelled = await asyncio.gather(first, return_exceptions=True)
        return [cancelled, await asyncio.wait_for(second, 5)]

    first, second = asyncio.run(scenario())
    assert isinstance(first[0], asyncio.CancelledError)
    assert second == "m"


def test_an_empty_queue_is_true_as_daphne_expects() -> None:
    # daphne's HTTP protocol tests `if self.application_queue:` before putting.
    assert InputQueue()


async def test_daphne_gives_websockets_an_input_queue_and_http_its_own(monkeypatch) -> None:
    from daphne.server import Server

    # install() patches daphne's class: put it back as it was after this test.
    monkeypatch.setattr(Server, "create_application", Server.create_application)
    monkeypatch.setattr(Server, "_chatplatform_replaced_create_application", False, raising=False)

    received: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        received.append((scope["type"], await receive()))

    assert install()
    installed = Server.create_application
    assert install()  # a second install changes nothing (no wrapper around the wrapper)
    assert Server.create_application is installed
    # Built, never run: nothing listens.
    server = Server(application=app, endpoints=["tcp:port=0:interface=127.0.0.1"])
    sockets, requests = object(), object()
    server.connections = {sockets: {}, requests: {}}
    queue = server.create_application(sockets, {"type": "websocket"})
    http_queue = server.create_application(requests, {"type": "http"})
    assert type(queue) is InputQueue
    assert type(http_queue) is asyncio.Queue
    queue.put_nowait({"type": "websocket.connect"})
    http_queue.put_nowait({"type": "http.request"})
    await asyncio.gather(
        server.connections[sockets]["application_instance"],
        server.connections[requests]["application_instance"],
    )
    assert sorted(received) == [
        ("http", {"type": "http.request"}),
        ("websocket", {"type": "websocket.connect"}),
    ]
