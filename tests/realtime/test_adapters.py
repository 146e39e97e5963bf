"""The few places that rely on library internals fail here, loudly, when a library changes."""

import asyncio

import pytest
from channels_redis import pubsub

from realtime.layers import INTERNALS, PipelinedPubSubChannelLayer
from tests.conftest import connect_user, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_channels_redis_still_has_what_the_pipelined_publish_uses():
    layer = PipelinedPubSubChannelLayer(hosts=[{"address": "redis://127.0.0.1:1"}])
    loop_layer = layer._get_layer()
    shard = loop_layer._get_shard(loop_layer._get_group_channel_name("user.1"))
    found = {
        "RedisPubSubChannelLayer": layer,
        "RedisPubSubLoopLayer": loop_layer,
        "RedisSingleShardConnection": shard,
    }
    for owner, names in INTERNALS.items():
        assert type(found[owner]).__name__ in {owner, "PipelinedPubSubChannelLayer"}
        missing = [n for n in names if not hasattr(found[owner], n)]
        assert not missing, f"channels-redis changed: {owner} lacks {missing}"
    assert isinstance(layer, pubsub.RedisPubSubChannelLayer)


def test_the_redis_setting_chooses_the_pipelined_layer(monkeypatch):
    import importlib

    from chatplatform import settings as project_settings

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        layers = importlib.reload(project_settings).CHANNEL_LAYERS
    finally:
        monkeypatch.delenv("REDIS_URL")
        importlib.reload(project_settings)
    assert layers["default"]["BACKEND"] == "realtime.layers.PipelinedPubSubChannelLayer"


def test_daphne_still_creates_applications_as_the_input_queue_copy_does():
    # realtime/inputqueue.create_application is daphne's Server.create_application with
    # another queue. If daphne changes its own, compare the two and update the copy.
    import ast
    import inspect

    import daphne.server

    tree = ast.parse(inspect.getsource(daphne.server))
    server = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Server")
    method = next(
        n for n in server.body if isinstance(n, ast.FunctionDef) and n.name == "create_application"
    )
    body = [ast.unparse(statement) for statement in method.body[1:]]  # after the docstring
    assert body == [
        "assert 'application_instance' not in self.connections[protocol]",
        "input_queue = asyncio.Queue()",
        "scope.setdefault('asgi', {'version': '3.0'})",
        "application_instance = self.application(scope=scope, receive=input_queue.get, "
        "send=partial(self.handle_reply, protocol))",
        "if protocol not in self.connections:\n    return None",
        "self.connections[protocol]['application_instance'] = asyncio.ensure_future("
        "application_instance, loop=asyncio.get_event_loop())",
        "return input_queue",
    ], "daphne changed Server.create_application: review realtime/inputqueue.py"


def test_daphne_and_twisted_still_have_what_the_send_guard_uses():
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet.abstract import FileDescriptor

    assert callable(WebSocketProtocol.handle_reply)
    assert {"STATE_OPEN", "dropConnection"} <= set(dir(WebSocketProtocol))
    transport = FileDescriptor()
    assert isinstance(transport.dataBuffer, bytes)
    assert isinstance(transport.offset, int)
    assert isinstance(transport._tempDataLen, int)


async def test_sockets_get_no_channel_layer_channel_of_their_own(amake_user, registry, process):
    # Events come from the hub: a socket asks the layer for no channel of its own
    # (Channels' AsyncConsumer.__call__ would make one per socket).
    user = await amake_user()
    comm, _ = await connect_user(user)
    assert process.layer.channels == {}
    await comm.disconnect()


async def test_an_idle_socket_holds_one_task_its_application(amake_user, registry):
    # Channels' AsyncConsumer.__call__ runs each receive as a task of its own under
    # asyncio.wait (await_many_dispatch): a second task, a waiter future and their
    # callbacks held by every idle socket. AgentConsumer.__call__ reads directly.
    user = await amake_user()
    first, _ = await connect_user(user)  # the user's session and hub entry exist now
    await asyncio.sleep(0.05)
    before = asyncio.all_tasks()
    second, _ = await connect_user(user)
    await asyncio.sleep(0.05)
    added = asyncio.all_tasks() - before
    assert len(added) == 1, added  # the application's own (the communicator's)
    # and messages still reach their handlers, in order, until the socket closes
    await send(second, {"type": "ping", "request_id": "a"})
    await send(second, {"type": "ping", "request_id": "b"})
    pongs = [await second.receive_json_from(timeout=10) for _ in range(2)]
    assert [(p["type"], p["request_id"]) for p in pongs] == [("pong", "a"), ("pong", "b")]
    await second.disconnect()
    await first.disconnect()


async def test_frames_reach_the_consumer_without_channels_database_hop(
    amake_user, registry, monkeypatch
):
    # Channels' AsyncConsumer.dispatch awaits channels.consumer.aclose_old_connections
    # (a thread hop) before every message; AgentConsumer.dispatch leaves it out.
    import channels.consumer

    hops = []

    async def counted() -> None:
        hops.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    user = await amake_user()
    comm, _ = await connect_user(user)
    await send(comm, {"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "pong"
    await comm.disconnect()
    assert hops == []


def test_autobahn_still_formats_its_debug_lines_with_what_we_swap():
    # realtime/autobahn_logging.py swaps these names in autobahn's protocol module;
    # if autobahn stopped using them the swap would do nothing (and cost nothing).
    import inspect

    from autobahn.websocket import protocol

    source = inspect.getsource(protocol)
    for name in ("hltype", "hlval", "pformat"):
        assert hasattr(protocol, name) and f"{name}(" in source


def test_autobahn_helpers_are_swapped_only_while_debug_is_off(monkeypatch):
    import txaio
    from autobahn.websocket import protocol

    from realtime import autobahn_logging

    for name in autobahn_logging.HELPERS:
        monkeypatch.setattr(protocol, name, getattr(protocol, name))
    monkeypatch.setattr(txaio, "get_global_log_level", lambda: "debug")
    assert autobahn_logging.install() is False
    assert protocol.hltype is not autobahn_logging._untouched
    monkeypatch.setattr(txaio, "get_global_log_level", lambda: "info")
    assert autobahn_logging.install() is True
    assert protocol.hlval("x") == "x" and protocol.pformat([1]) == [1]


def test_twisted_still_writes_as_the_next_turn_send_expects():
    # realtime/writesoon.py replaces tcp.Server.startWriting (Twisted's registers the
    # socket with the reactor) and flushes through FileDescriptor.doWrite: these are
    # the parts of Twisted it relies on.
    import ast
    import inspect

    from twisted.internet import abstract, asyncioreactor, tcp

    def body(function: object) -> list[str]:
        method = ast.parse(inspect.cleandoc("\n" + inspect.getsource(function))).body[0]
        assert isinstance(method, ast.FunctionDef)
        return [ast.unparse(s) for s in method.body[1:]]  # after the docstring

    assert body(abstract.FileDescriptor.startWriting) == ["self.reactor.addWriter(self)"]
    assert body(abstract.FileDescriptor.write)[-1] == (
        "if data:\n    self._tempDataBuffer.append(data)\n    self._tempDataLen += len(data)"
        "\n    self._maybePauseProducer()\n    self.startWriting()"
    )
    source = inspect.getsource(abstract.FileDescriptor.doWrite)
    for needed in ("self.writeSomeData(", "self.stopWriting()", "return l", "return None"):
        assert needed in source, f"Twisted changed doWrite: review realtime/writesoon.py ({needed})"
    assert issubclass(tcp.Server, abstract.FileDescriptor)
    assert "_asyncioEventloop" in inspect.getsource(asyncioreactor.AsyncioSelectorReactor.__init__)
    assert {"disconnecting", "_writeDisconnecting", "connected"} <= set(
        vars(abstract.FileDescriptor)
    )


def test_daphne_and_autobahn_still_send_text_as_the_frame_writer_expects():
    # realtime/textframes.py replaces daphne's serverSend for plain text frames, and
    # decides "plain" from these autobahn attributes.
    import ast
    import inspect

    from autobahn.websocket.protocol import WebSocketProtocol as Autobahn
    from daphne.ws_protocol import WebSocketProtocol

    method = ast.parse(inspect.cleandoc("\n" + inspect.getsource(WebSocketProtocol.serverSend)))
    function = method.body[0]
    assert isinstance(function, ast.FunctionDef)
    assert [ast.unparse(s) for s in function.body[1:]] == [
        "if self.state == self.STATE_CONNECTING:\n    self.serverAccept()",
        "logger.debug('Sent WebSocket packet to client for %s', self.client_addr)",
        "if binary:\n    self.sendMessage(content, binary)\n"
        "else:\n    self.sendMessage(content.encode('utf8'), binary)",
    ], "daphne changed serverSend: review realtime/textframes.py"
    options = set(Autobahn.CONFIG_ATTRS_COMMON + Autobahn.CONFIG_ATTRS_SERVER)
    assert {
        "autoFragmentSize",
        "maxMessagePayloadSize",
        "logFrames",
        "logOctets",
        "maskServerFrames",
    } <= options
    made = inspect.getsource(Autobahn._connectionMade)
    for name in ("self._perMessageCompress = None", "self.trackedTimings = None", "deque()"):
        assert name in made, "autobahn changed _connectionMade: review realtime/textframes.py"


def test_a_method_is_replaced_once_per_class():
    from realtime.patching import replace_once

    class Library:
        def send(self) -> list[str]:
            return ["library"]

    class Subclass(Library):
        pass

    def wrap(original):
        return lambda self: [*original(self), "ours"]

    replace_once(Library, "send", wrap)
    replace_once(Library, "send", wrap)  # installed twice: still one wrapper
    assert Library().send() == ["library", "ours"]
    replace_once(Subclass, "send", wrap)  # a subclass is a class of its own
    assert Subclass().send() == ["library", "ours", "ours"]
