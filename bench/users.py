"""Creating many users with API tokens in one manage.py call (benchmarks only)."""

import uuid

from tests.daphne import manage

SCRIPT = """
from realtime.tokens import token_issue, user_get_or_create
{setup}
for i in range({n}):
    print("TOKEN", token_issue(user=user_get_or_create(username="{p}%d" % i, create=True), days=1))
"""

FIREHOSE = """
from agents.models import Agent
Agent.objects.update_or_create(name="firehose", defaults={
    "implementation": "bench.firehose.FirehoseAgent", "allowed_tools": [], "enabled": True})
"""


def issue_tokens(
    env: dict[str, str], count: int, *, setup: str = "", prefix: str | None = None
) -> list[str]:
    """Create users `<prefix><i>` for i < count with a token each (after `setup`); return tokens."""
    prefix = prefix or f"b{uuid.uuid4().hex[:6]}-"
    out = manage(env, "shell", "-c", SCRIPT.format(n=count, p=prefix, setup=setup))
    return [line.split()[1] for line in out.splitlines() if line.startswith("TOKEN ")]
