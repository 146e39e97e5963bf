"""WebSocket URL routes."""

from django.urls import path

from realtime.consumer import AgentConsumer

websocket_urlpatterns = [
    path("ws/agents/", AgentConsumer.as_asgi()),
]
