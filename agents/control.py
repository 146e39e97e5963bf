"""Control messages between server processes: cancel a run, end a session, wake a waiting run."""

from dataclasses import dataclass
from typing import Any

from channels.layers import BaseChannelLayer

CANCEL_RUN = "run.cancel"
END_SESSION = "session.end"
INPUT_DECIDED = "input.decided"


def process_group(process_name: str) -> str:
    """Return the control group of one server process (cross-process cancels)."""
    return f"process.{process_name}"[:99]


async def request_run_cancel(
    layer: BaseChannelLayer, *, process: str, run_id: str, user_id: int, reason: str
) -> None:
    """Ask the process running a run to cancel it."""
    await layer.group_send(
        process_group(process),
        {"type": CANCEL_RUN, "run_id": run_id, "user_id": user_id, "reason": reason},
    )


async def request_session_end(
    layer: BaseChannelLayer, *, process: str, user_id: int, session_id: int
) -> None:
    """Ask the process holding a session to end it (and cancel its runs)."""
    await layer.group_send(
        process_group(process),
        {"type": END_SESSION, "user_id": user_id, "session_id": session_id},
    )


async def request_input_wake(
    layer: BaseChannelLayer, *, process: str, user_id: int, interrupt_id: str
) -> None:
    """Tell the process whose run waits on an input request that it was decided."""
    await layer.group_send(
        process_group(process),
        {"type": INPUT_DECIDED, "user_id": user_id, "interrupt_id": interrupt_id},
    )


@dataclass(frozen=True)
class ProcessControl:
    """Sends control messages to other processes through the channel layer."""

    layer: BaseChannelLayer

    def __post_init__(self) -> None:
        if self.layer is None:
            raise ValueError("cross-process control needs a channel layer")

    async def cancel_run(self, *, process: str, run_id: str, user_id: int, reason: str) -> None:
        """Ask the process running a run to cancel it."""
        await request_run_cancel(
            self.layer, process=process, run_id=run_id, user_id=user_id, reason=reason
        )

    async def wake_input(self, *, process: str, user_id: int, interrupt_id: str) -> None:
        """Tell the process running a run that its input request was decided."""
        await request_input_wake(
            self.layer, process=process, user_id=user_id, interrupt_id=interrupt_id
        )


def describe(message: dict[str, Any]) -> str:
    """Return a short text of a control message for logs."""
    return f"{message.get('type')} user_id={message.get('user_id')}"
