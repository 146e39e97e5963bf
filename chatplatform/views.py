"""HTTP views: the chat page, its small JSON reads, and the health check."""

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents.errors import UnknownAgent
from agents.events.replay import envelope_of
from agents.runtime.base import load_agent_class
from agents.selectors import (
    agents_enabled,
    inputs_pending_events,
    thread_events,
    thread_for_user,
    threads_for_user,
)


def _uid(request: HttpRequest) -> int:
    # login_required guarantees an authenticated user here.
    return int(str(request.user.pk))


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Say the process is alive; touches no dependency."""
    return JsonResponse({"status": "ok"})


def _with_options(agent: dict[str, str]) -> dict[str, Any]:
    """An agent for the page's picker, with the JSON Schema of the options it takes."""
    try:
        schema = load_agent_class(agent["implementation"]).options_schema
    except UnknownAgent:
        schema = {"type": "object", "properties": {}}
    return {"name": agent["name"], "description": agent["description"], "options": schema}


@login_required
@require_GET
def chat(request: HttpRequest) -> HttpResponse:
    """Render the chat page; everything live comes over the WebSocket."""
    context = {
        "boot": {
            "user_id": str(request.user.pk),
            "username": request.user.get_username(),
            "agents": [_with_options(agent) for agent in agents_enabled()],
            "max_message_chars": settings.WS_MAX_MESSAGE_CHARS,
            "default_agent": settings.AGENT_DEFAULT,
            "threads": threads_for_user(user_id=_uid(request)),
            "ws_path": "/ws/agents/",
        }
    }
    return render(request, "chat.html", context)


@login_required
@require_GET
def thread_history(request: HttpRequest, thread_id: str) -> JsonResponse:
    """Return the stored events of one of the user's threads (404 for anyone else's)."""
    thread = thread_for_user(user_id=_uid(request), thread_id=thread_id)
    if thread is None:
        raise Http404("no such thread")
    return JsonResponse(
        {
            "thread": {"id": str(thread.id), "title": thread.title},
            "events": [envelope_of(e) for e in thread_events(thread=thread)],
        }
    )


@login_required
@require_GET
def thread_list(request: HttpRequest) -> JsonResponse:
    """Return the user's latest threads."""
    return JsonResponse({"threads": threads_for_user(user_id=_uid(request))})


@login_required
@require_GET
def inputs_pending(request: HttpRequest) -> JsonResponse:
    """Return the input_requested events of the user's requests nobody has decided yet."""
    events = inputs_pending_events(user_id=_uid(request))
    return JsonResponse({"events": [envelope_of(e) for e in events]})
