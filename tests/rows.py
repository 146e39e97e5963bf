"""Rows for tests that read and write the database directly."""

import datetime

from django.utils import timezone

from agents.models import Agent, Run, Thread


def full_run(user, **overrides) -> Run:
    """A run with every kind of column set: uuids, JSON, times, nulls and numbers."""
    thread = Thread.objects.create(user=user, title="t ✓")
    values = {
        "user": user,
        "agent": Agent.objects.get(name="triage"),
        "thread": thread,
        "request_id": "r-1",
        "message": "calculate 6*7 \u2028 «quoted»",
        "options": {"nested": {"list": [1, 2.5, None, "ü"]}, "flag": True},
        "status": Run.Status.RUNNING,
        "process": "p-1",
        "started_at": timezone.now() - datetime.timedelta(seconds=3),
        "result": "",
        "input_tokens": 7,
        "output_tokens": None,
        **overrides,
    }
    return Run.objects.create(**values)
