"""The composition root: this process's parts, built once, handed to whoever needs them.

Nothing else constructs the writer, the hub, the registry or the batchers, and
no module looks them up in a global: the ASGI application, the WebSocket
consumer (through `as_asgi`), the auth middleware and the lifecycle get them
from here.
"""

from dataclasses import dataclass
from typing import Any

from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connection

from agents.batching import Batcher
from agents.control import ProcessControl
from agents.events.inline import InlineStore
from agents.events.replay import FirstPages
from agents.events.writer import EventWriter
from agents.registry import AgentRegistry, UserSessionFactory
from chatplatform.lifecycle import ProcessLifecycle
from realtime.connections import ConnectionBook
from realtime.hub import LocalHub
from realtime.inbox import ProcessInbox
from realtime.tokens import tokens_authenticate


@dataclass
class Process:
    """What one server process is made of."""

    layer: BaseChannelLayer
    hub: LocalHub
    inbox: ProcessInbox
    writer: EventWriter
    sessions: UserSessionFactory
    registry: AgentRegistry
    connections: ConnectionBook
    tokens: Batcher[str, Any]
    first_pages: FirstPages
    lifecycle: ProcessLifecycle

    def close(self) -> None:
        """Release the writer's thread and database connection."""
        self.writer.close()


def build_process(*, layer: BaseChannelLayer | None = None) -> Process:
    """Build the parts of this process around its channel layer (the configured one)."""
    layer = layer if layer is not None else get_channel_layer()
    if layer is None:
        # Without a layer no event would reach a socket: fail loudly instead.
        raise ValueError("the process needs a channel layer (CHANNEL_LAYERS['default'])")
    inbox = ProcessInbox(layer=layer)
    hub = LocalHub(channel_layer=layer, inbox=inbox)
    writer = EventWriter(
        publish=hub.publish,
        max_batch=settings.EVENT_WRITER_MAX_BATCH,
        max_queue=settings.EVENT_WRITER_MAX_QUEUE,
        inline=InlineStore()
        if settings.EVENT_WRITER_INLINE and connection.vendor == "sqlite"
        else None,
    )
    sessions = UserSessionFactory(writer=writer, control=ProcessControl(layer))
    registry = AgentRegistry(session_factory=sessions)
    return Process(
        layer=layer,
        hub=hub,
        writer=writer,
        sessions=sessions,
        registry=registry,
        connections=ConnectionBook(),
        tokens=Batcher(tokens_authenticate),
        first_pages=FirstPages(),
        inbox=inbox,
        lifecycle=ProcessLifecycle(registry=registry, writer=writer, inbox=inbox, hub=hub),
    )


def build_application(process: Process) -> Any:
    """Return the ASGI application serving HTTP and /ws/agents/ with this process's parts."""
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.core.asgi import get_asgi_application
    from django.urls import re_path

    from chatplatform.lifecycle import LifecycleMiddleware
    from realtime.auth import http_stack, websocket_stack
    from realtime.routing import agui_urlpatterns, websocket_urlpatterns

    django_app = get_asgi_application()
    return LifecycleMiddleware(
        ProtocolTypeRouter(
            {
                "http": URLRouter(
                    [
                        *agui_urlpatterns(
                            registry=process.registry,
                            hub=process.hub,
                            wrap=lambda app: http_stack(app, tokens=process.tokens),
                        ),
                        re_path(r"", django_app),  # type: ignore[arg-type]
                    ]
                ),
                "websocket": websocket_stack(
                    URLRouter(
                        websocket_urlpatterns(
                            registry=process.registry,
                            hub=process.hub,
                            connections=process.connections,
                            first_pages=process.first_pages,
                        )
                    ),
                    tokens=process.tokens,
                ),
            }
        ),
        lifecycle=process.lifecycle,
    )
