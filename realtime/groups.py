"""Channel-layer group names, derived only from server-side identities."""


def user_group(user_id: int) -> str:
    """Return the group every socket of a user joins."""
    return f"user.{int(user_id)}"


def process_group(process_name: str) -> str:
    """Return the control group of one server process (cross-process cancels)."""
    return f"process.{process_name}"[:99]
