"""WebSocket and AG-UI URL routes, given the process's parts."""

from collections.abc import Callable
from typing import Any

from django.urls import path

from agents.events.replay import FirstPages
from agents.registry import AgentRegistry
from realtime.agui.endpoints import AguiRun, AguiThread
from realtime.connections import ConnectionBook
from realtime.consumer import AgentConsumer
from realtime.hub import LocalHub


def websocket_urlpatterns(
    *,
    registry: AgentRegistry,
    hub: LocalHub,
    connections: ConnectionBook,
    first_pages: FirstPages,
) -> list[Any]:
    """Return the WebSocket routes, each consumer handed the parts it needs."""
    return [
        path(
            "ws/agents/",
            AgentConsumer.as_asgi(
                registry=registry, hub=hub, connections=connections, first_pages=first_pages
            ),
        ),
    ]


def agui_urlpatterns(
    *, registry: AgentRegistry, hub: LocalHub, wrap: Callable[[Any], Any]
) -> list[Any]:
    """Return the AG-UI routes (POST /agui/, GET /agui/threads/<id>/events), each `wrap`ped."""
    return [
        path("agui/", wrap(AguiRun(registry=registry, hub=hub))),
        path(
            "agui/threads/<str:thread_id>/events",
            wrap(AguiThread(registry=registry, hub=hub)),
        ),
    ]
