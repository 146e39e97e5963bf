"""Admin for agents, sessions, runs and events; history is read-only."""

import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from agents.control import request_run_cancel, request_session_end
from agents.events.sanitize import sanitize_parameters
from agents.models import (
    Agent,
    AgentSession,
    Connection,
    InputRequest,
    KnowledgeArticle,
    Run,
    RunEvent,
    Thread,
    WorkerProcess,
)
from agents.runtime.base import load_agent_class_checked
from agents.services import session_end


def pretty_json(value: Any) -> str:
    """Render JSON for people: indented, in a <pre>."""
    return format_html(
        '<pre class="json">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False)
    )


def ms(value: Any) -> str:
    """A time to the millisecond, in UTC."""
    if value is None:
        return "-"
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond // 1000:03d} UTC"


def changelist_link(model: str, text: str, **filters: Any) -> str:
    """A link to an admin list filtered by `filters`."""
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return format_html('<a href="{}?{}">{}</a>', reverse(f"admin:{model}_changelist"), query, text)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History: viewable, never added, changed or deleted through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """History is written by the runtime only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """History is never edited."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """History leaves only by retention (manage.py prune_events)."""
        return False


class AgentForm(forms.ModelForm):
    """An agent row is checked before it is saved: users never meet a broken one."""

    class Meta:
        model = Agent
        fields = [
            "name",
            "description",
            "enabled",
            "implementation",
            "allowed_tools",
            "approval_tools",
            "tool_timeout_seconds",
            "max_run_seconds",
            "config",
        ]

    def clean(self) -> dict[str, Any]:
        """The implementation must be an Agent class, and the config must fit its schema."""
        data = super().clean() or {}
        path = data.get("implementation")
        if path:
            try:
                implementation = load_agent_class_checked(path)
            except ValueError as exc:
                self.add_error("implementation", str(exc))
            else:
                try:
                    implementation.check_config(data.get("config"))
                except ValueError as exc:
                    self.add_error("config", f"Not a valid config for {path}: {exc}")
        return data


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    """Agents are configuration: editable, and checked before they are saved."""

    form = AgentForm

    list_display = [
        "name",
        "enabled",
        "implementation",
        "tools",
        "approvals",
        "tool_timeout_seconds",
        "max_run_seconds",
    ]
    list_editable = ["enabled"]
    list_filter = ["enabled"]
    search_fields = ["name", "description"]
    actions = ["enable", "disable"]

    @admin.display(description="allowed tools")
    def tools(self, obj: Agent) -> str:
        """List the allowed tools."""
        return ", ".join(obj.allowed_tools or [])

    @admin.display(description="tools needing approval")
    def approvals(self, obj: Agent) -> str:
        """List the tools whose calls wait for the user's approval."""
        return ", ".join(obj.approval_tools or [])

    @admin.action(description="Enable selected agents")
    def enable(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        """Enable agents."""
        self.message_user(request, f"{queryset.update(enabled=True)} agents enabled")

    @admin.action(description="Disable selected agents")
    def disable(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        """Disable agents (running runs go on; new ones are refused)."""
        self.message_user(request, f"{queryset.update(enabled=False)} agents disabled")


@admin.register(AgentSession)
class AgentSessionAdmin(ReadOnlyAdmin):
    """Users' sessions, with their runs and live connections."""

    list_display = [
        "id",
        "user",
        "status",
        "process",
        "created_at",
        "last_seen_at",
        "run_count",
        "live_connections",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["user__username"]
    date_hierarchy = "created_at"
    actions = ["end_sessions"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentSession]:
        """Count runs and open connections in the same query."""
        return (
            super()
            .get_queryset(request)
            .select_related("user")
            .annotate(
                runs_total=Count("runs", distinct=True),
                connections_open=Count(
                    "connections", filter=Q(connections__closed_at__isnull=True), distinct=True
                ),
            )
        )

    @admin.display(description="runs", ordering="runs_total")
    def run_count(self, obj: Any) -> int:
        """Number of runs of the session."""
        return int(obj.runs_total)

    @admin.display(description="live connections", ordering="connections_open")
    def live_connections(self, obj: Any) -> int:
        """Number of sockets open now."""
        return int(obj.connections_open)

    @admin.action(description="End selected sessions (cancels their runs)")
    def end_sessions(self, request: HttpRequest, queryset: QuerySet[AgentSession]) -> None:
        """End sessions through the registry's own service, and tell their processes."""
        layer = get_channel_layer()
        ended = 0
        for session in queryset.filter(status=AgentSession.Status.ACTIVE):
            session_end(session_id=session.pk)
            async_to_sync(request_session_end)(
                layer, process=session.process, user_id=session.user_id, session_id=session.pk
            )
            ended += 1
        self.message_user(request, f"{ended} sessions ended", messages.SUCCESS)


class InputRequestInline(admin.TabularInline):
    """A run's input requests and how each was decided, read-only."""

    model = InputRequest
    fields = ("id", "kind", "message", "outcome", "decided_by", "decided_at", "expires_at")
    readonly_fields = fields
    ordering = ["created_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Input requests are made by runs only."""
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    """Runs with their input requests and events; running ones can be cancelled."""

    list_display = [
        "short_id",
        "user",
        "agent",
        "short_message",
        "status",
        "started",
        "duration",
        "tokens",
        "error_code",
    ]
    list_display_links = ["short_id"]
    list_filter = ["status", "agent", ("user", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["id", "user__username", "message"]
    date_hierarchy = "created_at"
    inlines = [InputRequestInline]
    actions = ["cancel_runs"]
    readonly_fields = [
        "id",
        "user",
        "agent",
        "thread",
        "session",
        "status",
        "request_id",
        "message",
        "options_json",
        "process",
        "created_ms",
        "started_ms",
        "finished_ms",
        "events_link",
        "result",
        "input_tokens",
        "output_tokens",
        "error_code",
        "error_message",
    ]
    exclude = ["options", "created_at", "started_at", "finished_at"]

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Run) -> str:
        """The run id's first 8 characters (search takes the whole id)."""
        return str(obj.pk)[:8]

    @admin.display(description="message", ordering="message")
    def short_message(self, obj: Run) -> str:
        """The user's message, shortened."""
        text = " ".join(obj.message.split())
        return text if len(text) <= 60 else text[:59] + "…"

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: Run) -> str:
        """When the run started (or was queued)."""
        return ms(obj.started_at or obj.created_at)

    @admin.display(description="created")
    def created_ms(self, obj: Run) -> str:
        """When the run was accepted."""
        return ms(obj.created_at)

    @admin.display(description="started at")
    def started_ms(self, obj: Run) -> str:
        """When the run started."""
        return ms(obj.started_at)

    @admin.display(description="finished at")
    def finished_ms(self, obj: Run) -> str:
        """When the run ended."""
        return ms(obj.finished_at)

    @admin.display(description="events")
    def events_link(self, obj: Run) -> str:
        """The run's events, on the events list (paginated), in seq order."""
        count = obj.events.count()
        return changelist_link(
            "agents_runevent", f"{count} events, in seq order", run__id__exact=obj.pk
        )

    @admin.display(description="tokens in / out")
    def tokens(self, obj: Run) -> str:
        """The language-model tokens the run used, if it used any."""
        if obj.input_tokens is None and obj.output_tokens is None:
            return "-"
        return f"{obj.input_tokens or 0} / {obj.output_tokens or 0}"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        """Join what the list shows."""
        return super().get_queryset(request).select_related("user", "agent")

    @admin.display(description="options")
    def options_json(self, obj: Run) -> str:
        """The run's options as pretty JSON."""
        return pretty_json(obj.options)

    @admin.display(description="duration")
    def duration(self, obj: Run) -> str:
        """How long the run took (so far)."""
        if obj.started_at is None:
            return "-"
        if obj.finished_at is None:
            return "running"
        return f"{(obj.finished_at - obj.started_at).total_seconds():.2f} s"

    @admin.action(description="Cancel selected running runs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        """Ask each run's process to cancel it, as stop_agent does."""
        layer = get_channel_layer()
        active = queryset.filter(status__in=Run.ACTIVE)
        count = 0
        for run in active:
            async_to_sync(request_run_cancel)(
                layer,
                process=run.process,
                run_id=str(run.pk),
                user_id=run.user_id,
                reason="cancelled by an administrator",
            )
            count += 1
        self.message_user(request, f"cancel requested for {count} running runs", messages.SUCCESS)


@admin.register(InputRequest)
class InputRequestAdmin(ReadOnlyAdmin):
    """Every approval and question runs asked, pending or decided, and who decided; read-only."""

    list_display = [
        "id",
        "user",
        "run",
        "kind",
        "outcome",
        "decided_by",
        "decided_at",
        "created_at",
        "expires_at",
    ]
    list_filter = ["outcome", "kind", "decided_by", "created_at"]
    search_fields = ["id", "user__username", "run__id", "message"]
    date_hierarchy = "created_at"
    fields = (
        "id",
        "user",
        "run",
        "kind",
        "message",
        "request_json",
        "created_at",
        "expires_at",
        "outcome",
        "decided_by",
        "decided_at",
        "decided_connection",
        "response_json",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[InputRequest]:
        """Join what the list shows."""
        return super().get_queryset(request).select_related("user", "run")

    @admin.display(description="request")
    def request_json(self, obj: InputRequest) -> str:
        """What the run asked: tool and sanitised parameters, or the answer's schema."""
        return pretty_json(obj.request)

    @admin.display(description="response")
    def response_json(self, obj: InputRequest) -> str:
        """What came with the decision (edited parameters are shown sanitised)."""
        return pretty_json(sanitize_parameters(obj.response))


@admin.register(RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    """Every stored event; read-only."""

    list_display = ["seq", "user", "type", "summary", "run", "at"]
    list_filter = ["type", "created_at"]
    search_fields = ["user__username", "run__id"]
    fields = ("user", "run", "seq", "type", "at", "data")
    readonly_fields = fields
    list_per_page = 50

    def get_ordering(self, request: HttpRequest) -> list[str]:
        """One run's events read in seq order; the whole list newest first."""
        return ["seq"] if "run__id__exact" in request.GET else ["-created_at", "-seq"]

    @admin.display(description="time", ordering="created_at")
    def at(self, obj: RunEvent) -> str:
        """When the event was stored, to the millisecond."""
        return ms(obj.created_at)

    @admin.display(description="data")
    def summary(self, obj: RunEvent) -> str:
        """The event's data on one line."""
        text = json.dumps(obj.payload, ensure_ascii=False)
        return text if len(text) <= 90 else text[:89] + "…"

    @admin.display(description="data")
    def data(self, obj: RunEvent) -> str:
        """The event's data as pretty JSON."""
        return pretty_json(obj.payload)


@admin.register(Thread)
class ThreadAdmin(ReadOnlyAdmin):
    """Users' conversations."""

    list_display = ["id", "user", "title", "created_at"]
    search_fields = ["user__username", "title"]


@admin.register(Connection)
class ConnectionAdmin(ReadOnlyAdmin):
    """WebSocket connections, open and closed."""

    list_display = ["id", "user", "auth", "process", "opened_at", "closed_at"]
    list_filter = ["auth", ("closed_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username"]


@admin.register(WorkerProcess)
class WorkerProcessAdmin(ReadOnlyAdmin):
    """Server processes and their heartbeats."""

    list_display = ["name", "host", "pid", "started_at", "last_beat_at", "stopped_at"]


@admin.register(KnowledgeArticle)
class KnowledgeArticleAdmin(admin.ModelAdmin):
    """The knowledge base kb_search reads; editable."""

    list_display = ["title", "tags"]
    search_fields = ["title", "body", "tags"]


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserWithActivityAdmin(UserAdmin):
    """Django's user admin, with links to the user's runs, sessions, inputs and tokens."""

    readonly_fields = [*UserAdmin.readonly_fields, "activity"]
    fieldsets = [*(UserAdmin.fieldsets or ()), ("Agent activity", {"fields": ["activity"]})]

    @admin.display(description="activity")
    def activity(self, obj: Any) -> str:
        """Links to the user's runs, sessions, input requests and API tokens."""
        if obj.pk is None:
            return "-"
        return format_html(
            "{} · {} · {} · {}",
            changelist_link("agents_run", f"{obj.agent_runs.count()} runs", user__id__exact=obj.pk),
            changelist_link(
                "agents_agentsession",
                f"{obj.agent_sessions.count()} sessions",
                user__id__exact=obj.pk,
            ),
            changelist_link(
                "agents_inputrequest",
                f"{obj.agent_inputs.count()} input requests",
                user__id__exact=obj.pk,
            ),
            changelist_link("realtime_apitoken", "API tokens", user__id__exact=obj.pk),
        )
