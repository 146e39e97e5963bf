"""The AG-UI endpoints as ASGI apps, in process: refusals that need no server."""

import json

import pytest
from channels.testing import HttpCommunicator
from django.contrib.auth.models import AnonymousUser

from realtime.agui.endpoints import AguiRun, AguiThread

pytestmark = pytest.mark.django_db(transaction=True)


async def call(app, method, path, *, user=None, body=b"", headers=None):
    communicator = HttpCommunicator(
        app,
        method,
        path,
        body=body,
        headers=[(b"content-type", b"application/json"), *(headers or [])],
    )
    communicator.scope["user"] = user or AnonymousUser()
    communicator.scope["url_route"] = {
        "kwargs": {"thread_id": "00000000-0000-0000-0000-000000000000"}
    }
    response = await communicator.get_response(timeout=5)
    return response["status"], json.loads(response["body"] or b"{}"), dict(response["headers"])


async def test_refusals_before_any_stream(process, amake_user):
    run = AguiRun(registry=process.registry, hub=process.hub)
    status, body, _ = await call(run, "POST", "/agui/")
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    user = await amake_user()
    status, body, _ = await call(run, "GET", "/agui/", user=user)
    assert status == 405
    status, body, _ = await call(
        run, "POST", "/agui/", user=user, headers=[(b"origin", b"https://evil.example")]
    )
    assert (status, body["error"]["code"]) == (403, "forbidden_origin")
    thread = AguiThread(registry=process.registry, hub=process.hub)
    status, body, _ = await call(thread, "GET", "/agui/threads/x/events", user=user)
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_a_stopping_process_turns_requests_away(process, amake_user):
    process.registry.draining = True
    try:
        user = await amake_user()
        run = AguiRun(registry=process.registry, hub=process.hub)
        status, body, headers = await call(run, "POST", "/agui/", user=user, body=b"{}")
        assert (status, body["error"]["code"]) == (503, "service_restarting")
        assert headers[b"retry-after"] == b"1"
    finally:
        process.registry.draining = False


async def test_a_layer_that_cannot_be_joined_is_503_and_leaves_nothing_attached(
    process, amake_user, monkeypatch
):
    user = await amake_user()
    hub = process.hub
    real_attach = hub.attach

    async def failing_attach(stream):
        await real_attach(stream)  # registered, then the layer fails (as Redis down would)
        raise ConnectionError("layer down")

    monkeypatch.setattr(hub, "attach", failing_attach)
    body = json.dumps(
        {
            "threadId": "7b0c1a52-5e43-4f57-9a3e-2a3c9b2f1e10",
            "runId": "r",
            "messages": [{"id": "u", "role": "user", "content": "calculate 1+1"}],
        }
    ).encode()
    run = AguiRun(registry=process.registry, hub=hub)
    status, answer, headers = await call(run, "POST", "/agui/", user=user, body=body)
    assert (status, answer["error"]["code"]) == (503, "unavailable")
    assert headers[b"retry-after"] == b"1"
    assert hub.streams_of(user.pk) == ()
