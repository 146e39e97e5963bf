"""Agents, user sessions, threads, runs and their events."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper


class Agent(models.Model):
    """An agent users can run; its implementation is named by a dotted path."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    implementation = models.CharField(
        max_length=255, help_text="Dotted path of the agents.runtime.base.Agent subclass."
    )
    allowed_tools = models.JSONField(
        default=list, blank=True, help_text="Names of the tools this agent may call."
    )
    approval_tools = models.JSONField(
        default=list,
        blank=True,
        help_text="Names of the allowed tools whose every call waits for the user's approval.",
    )
    tool_timeout_seconds = models.FloatField(default=30.0)
    max_run_seconds = models.FloatField(default=600.0)
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Check that the tool lists name known tools, and approvals only allowed ones."""
        errors: dict[str, str] = {}
        for field in ("allowed_tools", "approval_tools"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                errors[field] = "Give a JSON list of tool names."
                continue
            unknown = sorted(set(value) - set(settings.AGENT_TOOLS))
            if unknown:
                errors[field] = f"Unknown tools: {', '.join(unknown)}."
        if not errors:
            outside = sorted(set(self.approval_tools) - set(self.allowed_tools))
            if outside:
                errors["approval_tools"] = f"Not in allowed tools: {', '.join(outside)}."
        if errors:
            raise ValidationError(errors)


class AgentSession(models.Model):
    """One user's agent session in one server process."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        ENDED = "ended"

    # No index of its own: (user, status) below begins with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="agent_sessions",
        db_index=False,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    process = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "status"])]

    def __str__(self) -> str:
        return f"session {self.pk} of {self.user_id}"


class Connection(models.Model):
    """One open (or closed) WebSocket of a user, for the admin."""

    id = models.CharField(max_length=32, primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_connections"
    )
    # No index of its own: (session, closed_at) below begins with it.
    session = models.ForeignKey(
        AgentSession,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="connections",
        db_index=False,
    )
    process = models.CharField(max_length=128, blank=True)
    auth = models.CharField(max_length=16, blank=True, help_text="cookie or token")
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["session", "closed_at"])]

    def __str__(self) -> str:
        return self.id


class Thread(models.Model):
    """A conversation of one user; runs belong to a thread."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_threads"
    )
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title or str(self.id)


class Run(models.Model):
    """One execution of an agent for a user's message."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING_INPUT = "waiting_input"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"

    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.WAITING_INPUT)
    TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.INTERRUPTED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: (user, status) below begins with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="agent_runs",
        db_index=False,
    )
    session = models.ForeignKey(
        AgentSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="runs")
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="runs")
    request_id = models.CharField(max_length=128, blank=True)
    message = models.TextField()
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    process = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.TextField(blank=True)
    # Token usage reported by a language model (the `usage` of each API answer, summed).
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "status"]),
            models.Index(fields=["status", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"Run {str(self.id)[:8]} ({self.status})"


class InputRequest(models.Model):
    """A run's question to its user (approve a tool call, or answer), and how it was decided."""

    class Kind(models.TextChoices):
        TOOL_APPROVAL = "tool_approval"
        QUESTION = "question"

    class Outcome(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        EDITED = "edited"
        REJECTED = "rejected"
        ANSWERED = "answered"
        EXPIRED = "expired"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"

    class DecidedBy(models.TextChoices):
        USER = "user"
        TIMEOUT = "timeout"
        CANCEL = "cancel"
        SHUTDOWN = "shutdown"

    id = models.CharField(max_length=40, primary_key=True, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="inputs")
    # No index of its own: (user, outcome) below begins with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="agent_inputs",
        db_index=False,
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    message = models.TextField()
    # As sent in input_requested: tool_name, tool_call_id and sanitised parameters,
    # or the question's response_schema.
    request = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    outcome = models.CharField(
        max_length=16, choices=Outcome.choices, default=Outcome.PENDING, db_index=True
    )
    decided_by = models.CharField(max_length=16, choices=DecidedBy.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_connection = models.CharField(
        max_length=32, blank=True, help_text="The WebSocket connection the decision came on."
    )
    # The decision's content: `answer`, edited `parameters`, or a rejection `message`.
    response = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "outcome"])]

    def __str__(self) -> str:
        return f"{self.id} ({self.outcome})"


class UserEventCounter(models.Model):
    """The last event sequence number given to a user; its row lock orders emits."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="agent_event_counter",
    )
    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user_id}@{self.last_seq}"


class RowidAutoField(models.BigAutoField):
    """A BigAutoField that is SQLite's plain rowid there, without AUTOINCREMENT."""

    # AUTOINCREMENT keeps the table's highest id in sqlite_sequence, one more
    # page written at every commit (a batch of events' commit about 20 % cheaper
    # without it, measured). Ids then come from max(id) + 1: one is given again
    # only after the newest rows are deleted, and nothing refers to an event's id.
    # db_type_suffix is Django's hook for that suffix (undeclared in django-stubs);
    # test_storing_events_writes_no_sqlite_sequence_row fails if Django stops using it.
    def db_type_suffix(self, connection: BaseDatabaseWrapper) -> str | None:
        """No AUTOINCREMENT on SQLite; the backend's usual suffix elsewhere."""
        if connection.vendor == "sqlite":
            return None
        return super().db_type_suffix(connection)  # type: ignore[misc]


class RunEvent(models.Model):
    """One lifecycle event of a run, numbered per user by `seq`."""

    id = RowidAutoField(primary_key=True)

    # No index of their own: (user, seq) and (run, seq) below begin with them and
    # serve every lookup by either; each index more is one more page written per
    # event (two fewer: a batch's commit about 35 % cheaper on SQLite, measured).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="agent_events",
        db_index=False,
    )
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.BigIntegerField()
    type = models.CharField(max_length=32)
    payload = models.JSONField(default=dict)
    # The wire frame as sent live, kept so replay sends it without re-encoding
    # ('' for events stored before this column, or by hand: rebuilt on replay).
    frame = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["user_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["user", "seq"], name="runevent_user_seq_unique"),
        ]
        indexes = [models.Index(fields=["run", "seq"])]

    def __str__(self) -> str:
        return f"{self.seq} {self.type}"


class StartBucket(models.Model):
    """A user's start-rate bucket, shared by every process through the database.

    Kept as one number (the generic cell rate algorithm): `busy_until`, the Unix
    time at which the bucket is full again. Each start pushes it 1/rate seconds
    later; a start is allowed while it is at most (burst - 1)/rate ahead of now.
    So taking a start is one conditional UPDATE.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="agent_start_bucket",
    )
    busy_until = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.user_id}: busy until {self.busy_until:.3f}"


class WorkerProcess(models.Model):
    """A server process; its heartbeat tells whether its runs are still looked after."""

    name = models.CharField(max_length=128, primary_key=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_beat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_beat_at"]
        verbose_name_plural = "worker processes"

    def __str__(self) -> str:
        return self.name


class KnowledgeArticle(models.Model):
    """An entry of the small knowledge base searched by the kb_search tool."""

    title = models.CharField(max_length=200)
    body = models.TextField()
    tags = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title
