"""/healthz, /readyz and /metrics, in-process and against real daphne processes."""

import asyncio
import json
import logging
import socket
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

from chatplatform.logs import JsonFormatter
from chatplatform.ops import layer_probe
from tests.daphne import Daphne, manage, sqlite_env
from tests.services import free_port
from tests.wsclient import AgentClient


def get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.django_db(transaction=True)
def test_readyz_healthy(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}


@pytest.mark.django_db(transaction=True)
def test_readyz_reports_a_dead_channel_layer(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {"address": f"redis://127.0.0.1:{free_port()}", "socket_connect_timeout": 0.5}
                ]
            },
        }
    }
    layer_probe._channel.clear()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["channel_layer"]
    assert body["checks"]["database"] == "ok"
    assert (
        "ConnectionError" in body["checks"]["channel_layer"]
        or "timed out" in body["checks"]["channel_layer"]
    )
    layer_probe._channel.clear()


@pytest.mark.django_db
def test_metrics_content_and_access(client, settings):
    from agents.metrics import EVENTS_EMITTED

    EVENTS_EMITTED.labels("agent_started").inc()
    body = client.get("/metrics").content.decode()
    for name in (
        "chatplatform_connections_open",
        "chatplatform_sessions",
        "chatplatform_runs_active",
        'chatplatform_events_emitted_total{type="agent_started"}',
        "chatplatform_delivery_failures_total",
        "chatplatform_outbox_events",
        "chatplatform_emit_to_socket_seconds_bucket",
        "chatplatform_replayed_events_total",
    ):
        assert name in body, name
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    settings.METRICS_TOKEN = "s3cret-token"
    assert (
        client.get(
            "/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-token"
        ).status_code
        == 200
    )
    assert (
        client.get(
            "/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong"
        ).status_code
        == 403
    )


def test_json_log_lines_carry_context():
    record = logging.LogRecord(
        "realtime.consumer", logging.INFO, __file__, 1, "socket connected %s", ("x",), None
    )
    record.user_id, record.connection_id = 7, "abc"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "socket connected x"
    assert (line["user_id"], line["connection_id"], line["level"]) == (7, "abc", "INFO")
    assert "run_id" not in line


@pytest.mark.e2e
def test_readyz_names_the_database_when_it_is_down_and_healthz_stays_up():
    dead_db = f"postgres://nobody@127.0.0.1:{free_port()}/none"
    with sqlite_env() as env:
        env = dict(env, DATABASE_URL=dead_db, READY_TIMEOUT_SECONDS="3")
        down = ("process start-up housekeeping failed", "Service Unavailable: /readyz")
        with Daphne(env, allow_errors=down) as server:
            assert get(server.http_url + "/healthz") == (200, '{"status": "ok"}')
            status, body = get(server.http_url + "/readyz")
    assert status == 503
    assert json.loads(body)["failing"] == ["database"]


@pytest.mark.e2e
def test_readyz_names_the_channel_layer_when_redis_is_down():
    with sqlite_env(
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", READY_TIMEOUT_SECONDS="2"
    ) as env:
        down = ("joining the control group failed", "Service Unavailable: /readyz")
        with Daphne(env, allow_errors=down) as server:
            status, body = get(server.http_url + "/readyz")
    assert status == 503
    assert json.loads(body)["failing"] == ["channel_layer"]


@pytest.mark.e2e
async def test_multiprocess_metrics_and_json_logs_through_daphne():
    with (
        tempfile.TemporaryDirectory() as metrics_dir,
        sqlite_env(PROMETHEUS_MULTIPROC_DIR=metrics_dir) as env,
    ):
        with Daphne(env) as server:
            token = manage(env, "issue_token", f"m{uuid.uuid4().hex[:8]}", "--create-user")
            client = AgentClient(server.ws_url, token)
            await client.connect()
            run = await client.start("calculate 6*7")
            await client.until_terminal({run["run_id"]})
            status, body = await asyncio.to_thread(get, server.http_url + "/metrics")
            await client.close()
            log = server.output()
    assert status == 200
    assert 'chatplatform_events_emitted_total{type="agent_completed"} 1.0' in body
    assert 'chatplatform_runs_finished_total{status="completed"} 1.0' in body
    assert "chatplatform_emit_to_socket_seconds_count 7.0" in body
    connected = [json.loads(line) for line in log.splitlines() if '"socket connected' in line]
    assert connected and {"user_id", "connection_id", "time", "level"} <= set(connected[0])


@pytest.mark.e2e
def test_daphne_heartbeat_closes_a_half_open_connection():
    with sqlite_env() as env, Daphne(env, "--ping-interval", "1", "--ping-timeout", "2") as server:
        token = manage(env, "issue_token", f"h{uuid.uuid4().hex[:8]}", "--create-user")
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        sock.sendall(
            (
                "GET /ws/agents/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        started = time.monotonic()
        received = b""
        # a client that never answers pings: the server must hang up on it
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass  # an abortive close is a hang-up too
        elapsed = time.monotonic() - started
        sock.close()
    assert b"101 Switching Protocols" in received
    assert b"connection_established" in received
    assert elapsed < 12
