"""Shared fixtures: a fresh registry per test, users with tokens, connected sockets."""

import importlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import connections

from agents.events.schema import TERMINAL_TYPES
from agents.events.writer import close_writers
from agents.registry import AgentRegistry
from chatplatform.process import Process, build_application, build_process
from realtime.tokens import token_issue

seed_module = importlib.import_module("agents.migrations.0002_seed_builtin_agents")
seed_llm_module = importlib.import_module("agents.migrations.0007_seed_llm_agent")


@pytest.fixture(scope="session", autouse=True)
def writers_closed_before_the_database_goes(django_db_setup: Any) -> Any:
    """Close the connections of worker threads before the test database is dropped.

    The event writers' threads, and asgiref's thread where Django's async ORM
    calls (aget, async for) run without closing theirs.
    """
    yield
    close_writers()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


# The application of the test's process, for sockets opened by the helpers below.
_served: dict[str, Any] = {}


def serve_new_process() -> Process:
    """Build a process, serve its application to the socket helpers, and return it.

    New channel layers too: they hold state bound to an event loop.
    """
    channel_layers.backends.clear()
    built = build_process()
    _served["application"] = build_application(built)
    _served.setdefault("built", []).append(built)
    return built


@pytest.fixture(autouse=True)
def process() -> Any:
    """Give each test a process of its own, built by the composition root."""
    yield serve_new_process()
    for built in _served.pop("built", []):
        built.close()
    _served.clear()
    channel_layers.backends.clear()


@pytest.fixture
async def registry(process: Process) -> AsyncIterator[AgentRegistry]:
    """Return the test's registry and end its sessions (and runs) afterwards."""
    yield process.registry
    await process.registry.shutdown()
    await process.inbox.close()


@pytest.fixture
def seeded(transactional_db: Any) -> None:
    """Re-seed the built-in agents (transactional tests flush migrated data)."""
    seed_module.seed(django_apps, None)
    seed_llm_module.seed(django_apps, None)
    agent_model = django_apps.get_model("agents", "Agent")
    agent_model.objects.get_or_create(
        name="scripted",
        defaults={
            "implementation": "tests.tools.ScriptedAgent",
            "allowed_tools": ["calculator", "slow", "broken", "refusing", "echo"],
            "tool_timeout_seconds": 0.3,
        },
    )


@pytest.fixture
def make_user(seeded: None) -> Callable[..., Any]:
    """Return a function creating a new user and an API token for it."""

    def make(username: str | None = None) -> Any:
        user = get_user_model().objects.create_user(
            username=username or f"u{uuid.uuid4().hex[:10]}", password="pw-for-tests"
        )
        user.token = token_issue(user=user, days=1)
        return user

    return make


@pytest.fixture
def amake_user(make_user: Callable[..., Any]) -> Callable[..., Any]:
    """Return an async function creating a user with a token."""
    return database_sync_to_async(make_user)


async def open_socket(
    token: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
) -> WebsocketCommunicator:
    """Connect to the test process's ASGI application as a client would."""
    application = _served["application"]
    all_headers = list(headers or [])
    if token:
        all_headers.append((b"authorization", f"Bearer {token}".encode()))
    comm = WebsocketCommunicator(application, "/ws/agents/", headers=all_headers)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    return comm


async def connect_user(user: Any) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    """Open a socket for `user` and return it with its connection_established frame."""
    comm = await open_socket(user.token)
    hello = await comm.receive_json_from(timeout=10)
    assert hello["type"] == "connection_established"
    return comm, hello


async def send(comm: WebsocketCommunicator, frame: dict[str, Any]) -> None:
    """Send one JSON frame."""
    await comm.send_to(text_data=json.dumps(frame))


async def receive_frame(comm: WebsocketCommunicator, timeout: float = 10) -> dict[str, Any]:
    """Return the next frame, taking first any set aside by `start`."""
    early = getattr(comm, "early_frames", None)
    if early:
        return early.pop(0)
    return await comm.receive_json_from(timeout=timeout)


async def start(
    comm: WebsocketCommunicator, message: str, agent: str = "triage", **payload: Any
) -> dict[str, Any]:
    """Start a run and return its run_accepted frame.

    Events of the user's other runs may come first (the protocol only orders a
    run's own events after its run_accepted): they are set aside for later reads.
    """
    await send(
        comm,
        {
            "type": "start_agent",
            "request_id": "r-start",
            "payload": {"agent": agent, "message": message, **payload},
        },
    )
    set_aside = []
    reply = await comm.receive_json_from(timeout=10)
    while "seq" in reply:
        set_aside.append(reply)
        reply = await comm.receive_json_from(timeout=10)
    assert reply["type"] == "run_accepted", reply
    assert all(frame["run_id"] != reply["run_id"] for frame in set_aside), set_aside
    comm.early_frames = [*getattr(comm, "early_frames", []), *set_aside]  # type: ignore[attr-defined]
    return reply


async def collect_run(
    comm: WebsocketCommunicator, run_id: str, timeout: float = 20
) -> list[dict[str, Any]]:
    """Receive frames until the run's terminal event; return that run's events."""
    events = []
    while True:
        frame = await receive_frame(comm, timeout=timeout)
        if frame.get("run_id") == run_id and "seq" in frame:
            events.append(frame)
            if frame["type"] in TERMINAL_TYPES:
                return events


def stored_frames(run_id: str) -> list[dict[str, Any]]:
    """Return the stored events of a run as wire envelopes, in seq order."""
    from agents.events.replay import envelope_of
    from agents.models import RunEvent

    return [
        envelope_of(e)
        for e in RunEvent.objects.filter(run_id=run_id).select_related("run__agent").order_by("seq")
    ]


astored_frames = database_sync_to_async(stored_frames)
