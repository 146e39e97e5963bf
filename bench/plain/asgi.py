"""The alternative a user would otherwise pick: a plain Channels consumer forwarding group_send.

Kept in bench/, not in the product. A socket sends {"user": N} to join `user.N`;
a driver socket sends {"drive": {"users": U, "rate": R, "seconds": S}} and the
server group_sends R events/s spread over the U users, each stamped with its time.
"""

import asyncio
import json
import os
import time

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 100_000},
            }
        },
        INSTALLED_APPS=["channels"],
        SECRET_KEY="bench-only",
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "")
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path

from bench.pacing import paced


class PlainConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        frame = json.loads(text_data)
        if "user" in frame:
            await self.channel_layer.group_add(f"user.{frame['user']}", self.channel_name)
            await self.send(text_data='{"type":"joined"}')
        elif "drive" in frame:
            self.driver = asyncio.ensure_future(drive(self.channel_layer, **frame["drive"]))

    async def agent_event(self, message):
        await self.send(text_data=message["text"])


async def drive(layer, users: int, rate: float, seconds: float) -> None:
    async for i in paced(rate, int(rate * seconds)):
        text = json.dumps({"type": "partial_result", "seq": i, "t": time.time()})
        await layer.group_send(f"user.{i % users}", {"type": "agent.event", "text": text})


application = URLRouter([path("ws/", PlainConsumer.as_asgi())])
