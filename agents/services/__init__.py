"""State changes, one module per entity; the public names are importable from here too.

Events are stored by the event pipeline (agents/events/store.py).
"""

from agents.identity import HOST, PROCESS_NAME
from agents.services.connections import (
    ConnectionRequest,
    connections_close,
    connections_close_orphaned,
    connections_open,
)
from agents.services.processes import (
    dead_processes_sweep,
    process_beat,
    process_stop,
    processes_alive,
)
from agents.services.runs import (
    LocalRuns,
    RunDraft,
    RunLimits,
    run_admit,
    run_claim_interrupted,
    run_create,
    run_finish,
    run_mark_running,
    start_token_take,
)
from agents.services.sessions import session_end, sessions_open

__all__ = [
    "HOST",
    "PROCESS_NAME",
    "ConnectionRequest",
    "LocalRuns",
    "RunDraft",
    "RunLimits",
    "connections_close",
    "connections_close_orphaned",
    "connections_open",
    "dead_processes_sweep",
    "process_beat",
    "process_stop",
    "processes_alive",
    "run_admit",
    "run_claim_interrupted",
    "run_create",
    "run_finish",
    "run_mark_running",
    "session_end",
    "sessions_open",
    "start_token_take",
]
