"""The README's client snippet works as written, against a real daphne."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daphne import Daphne, manage, sqlite_env

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_client_prints_the_run(tmp_path):
    code = re.search(r"```python\n(import asyncio, json, sys.*?)```", README.read_text(), re.S)
    assert code, "the README has no client snippet"
    with sqlite_env() as env, Daphne(env) as server:
        token = manage(env, "issue_token", "readme", "--create-user")
        client = tmp_path / "client.py"
        client.write_text(code.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{server.port}"))
        done = subprocess.run(
            [sys.executable, str(client), token], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "connected as user 1 last seq 0"
    assert re.fullmatch(r"run [0-9a-f-]{36} accepted", lines[1])
    assert lines[2] == "1 agent_started {'message': 'calculate 6*7'}"
    assert lines[-1].startswith("7 agent_completed {'status': 'completed', 'result': '6*7 = 42'")
    assert "None" not in done.stdout
