"""Prometheus metrics of the domain: sessions, runs, events, inputs, tokens (multiprocess-safe)."""

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

SESSIONS = Gauge(
    "chatplatform_sessions", "User agent sessions held in memory", multiprocess_mode="livesum"
)
RUNS_ACTIVE = Gauge(
    "chatplatform_runs_active", "Runs queued or running", multiprocess_mode="livesum"
)
RUNS_STARTED = Counter("chatplatform_runs_started_total", "Runs accepted")
RUNS_FINISHED = Counter("chatplatform_runs_finished_total", "Runs ended, by status", ["status"])
EVENTS_EMITTED = Counter(
    "chatplatform_events_emitted_total", "Agent events stored and published, by type", ["type"]
)


EVENT_BATCH_SECONDS = Histogram(
    "chatplatform_event_batch_seconds",
    "From a batch taken by the event writer to its transaction done and back on the loop",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
EVENT_BATCH_WAIT_SECONDS = Histogram(
    "chatplatform_event_batch_wait_seconds",
    "How long a batch's oldest event waited in the writer's queue before its store began",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
EVENT_BATCH_SIZE = Histogram(
    "chatplatform_event_batch_size",
    "Events per batch of the event writer",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)


@functools.cache
def events_emitted(event_type: str) -> Any:
    """Return the EVENTS_EMITTED child for a type (labels() is too slow for every event)."""
    return EVENTS_EMITTED.labels(event_type)


INPUTS_REQUESTED = Counter(
    "chatplatform_inputs_requested_total", "Input requests made by runs, by kind", ["kind"]
)
INPUTS_RESOLVED = Counter(
    "chatplatform_inputs_resolved_total", "Input requests ended, by outcome", ["outcome"]
)
INPUT_WAKEUPS = Counter(
    "chatplatform_input_wakeups_total",
    "Waiting runs that learnt of a decision: woken here (local), by another process"
    " (control), or by their own poll of the row (poll)",
    ["via"],
)
LLM_TOKENS = Counter(
    "chatplatform_llm_tokens_total",
    "Language-model tokens used by runs, by agent and direction (input or output)",
    ["agent", "direction"],
)
