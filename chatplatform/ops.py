"""Operational endpoints: readiness with bounded dependency checks, Prometheus metrics."""

import asyncio
import hmac
import os
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

READY_MESSAGE_TYPE = "ready.ping"


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


class LayerProbe:
    """Round-trips a message through the channel layer on one reused channel."""

    def __init__(self) -> None:
        self._channel: dict[int, str] = {}
        self._lock: asyncio.Lock | None = None

    async def check(self) -> None:
        """Send a message to ourselves through the layer and receive it."""
        layer = get_channel_layer()
        if layer is None:
            raise RuntimeError("no channel layer configured")
        loop_id = id(asyncio.get_running_loop())
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            # One channel per loop, reused: a new one per probe would pile up subscriptions.
            if loop_id not in self._channel:
                self._channel[loop_id] = await layer.new_channel("ready.")
            channel = self._channel[loop_id]
            nonce = os.urandom(8).hex()
            await layer.send(channel, {"type": READY_MESSAGE_TYPE, "nonce": nonce})
            while (await layer.receive(channel)).get("nonce") != nonce:
                pass  # an answer to an earlier probe that timed out


layer_probe = LayerProbe()


async def _check(name: str, probe: Any, bound: float) -> tuple[str, str]:
    try:
        async with asyncio.timeout(bound):
            await probe()
    except TimeoutError:
        return name, f"timed out after {bound:g} s"
    except Exception as exc:  # the point is to report it, whatever it is
        return name, f"{type(exc).__name__}: {str(exc)[:200]}"
    return name, "ok"


async def readyz(request: HttpRequest) -> JsonResponse:
    """Check the database and the channel layer within a bound; 503 naming what failed."""
    timeout = settings.READY_TIMEOUT_SECONDS
    results = dict(
        await asyncio.gather(
            _check("database", database_sync_to_async(_database_ping), timeout),
            _check("channel_layer", layer_probe.check, timeout),
        )
    )
    failing = sorted(name for name, result in results.items() if result != "ok")
    body: dict[str, Any] = {"status": "ok" if not failing else "unavailable", "checks": results}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)


def _metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
            return True
    return request.META.get("REMOTE_ADDR", "") in settings.METRICS_ALLOWED_IPS


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve Prometheus metrics to allowed addresses or holders of METRICS_TOKEN."""
    if not _metrics_allowed(request):
        return HttpResponse("metrics are restricted\n", status=403, content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
