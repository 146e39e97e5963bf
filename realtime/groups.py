"""Channel-layer group names, derived only from server-side identities."""


def user_group(user_id: int) -> str:
    """Return the group every socket of a user joins."""
    return f"user.{int(user_id)}"
