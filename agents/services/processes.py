"""Server processes among each other: heartbeat, stop, and finding the dead ones."""

import os
from datetime import timedelta

from django.utils import timezone

from agents.identity import HOST, PROCESS_NAME
from agents.models import Run, WorkerProcess
from agents.services.connections import connections_close_orphaned


def process_beat(*, name: str = PROCESS_NAME) -> None:
    """Record that this process is alive."""
    WorkerProcess.objects.update_or_create(
        name=name,
        defaults={"last_beat_at": timezone.now(), "host": HOST, "pid": os.getpid()},
    )


def process_stop(*, name: str = PROCESS_NAME) -> None:
    """Record that this process stopped looking after runs."""
    WorkerProcess.objects.filter(name=name).update(stopped_at=timezone.now())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def processes_alive(*, stale_after_seconds: float, own: str = PROCESS_NAME) -> set[str]:
    """Return the names of processes still alive: beating, not stopped, pid alive if local."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_seconds)
    alive = {own}
    for proc in WorkerProcess.objects.filter(stopped_at__isnull=True, last_beat_at__gte=cutoff):
        same_host_dead = proc.host == HOST and proc.pid is not None and not _pid_alive(proc.pid)
        if not same_host_dead:
            alive.add(proc.name)
    return alive


def dead_processes_sweep(*, stale_after_seconds: float, own: str = PROCESS_NAME) -> list[Run]:
    """Close the socket records of gone processes; return their runs still marked active.

    A process is gone when it stopped, fell silent for `stale_after_seconds`,
    or is a dead pid on this host.
    """
    alive = processes_alive(stale_after_seconds=stale_after_seconds, own=own)
    connections_close_orphaned(live_processes=alive)
    return list(
        Run.objects.filter(status__in=Run.ACTIVE)
        .exclude(process__in=alive)
        .select_related("agent")
        .order_by("created_at")
    )
