"""WebSocket URL routes, given the process's parts."""

from typing import Any

from django.urls import path

from agents.registry import AgentRegistry
from realtime.connections import ConnectionBook
from realtime.consumer import AgentConsumer
from realtime.hub import LocalHub


def websocket_urlpatterns(
    *, registry: AgentRegistry, hub: LocalHub, connections: ConnectionBook
) -> list[Any]:
    """Return the WebSocket routes, each consumer handed the parts it needs."""
    return [
        path(
            "ws/agents/",
            AgentConsumer.as_asgi(registry=registry, hub=hub, connections=connections),
        ),
    ]
