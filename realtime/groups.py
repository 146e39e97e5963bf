"""Channel-layer names: the user groups events travel in, and their message type."""

# The channel-layer message type that carries stored events between processes.
EVENT_MESSAGE_TYPE = "agent.event"


def user_group(user_id: int) -> str:
    """Return the group every socket of a user joins."""
    return f"user.{int(user_id)}"
