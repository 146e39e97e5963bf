"""`manage.py check --deploy` is clean under the documented production environment."""

import re
import subprocess
import sys

from tests.daphne import ROOT, project_env


def documented_environment():
    """The variables in docs/security.md's production block."""
    text = (ROOT / "docs" / "security.md").read_text()
    block = (
        text.split("tests/chatplatform/test_deploy.py`) with:")[1].split("```sh")[1].split("```")[0]
    )
    env = dict(re.findall(r"([A-Z_]+)=(\S+)", block))
    env["SECRET_KEY"] = "k" * 20 + "-production-secret-" + "9f8e7d6c5b4a" * 3
    return env


def test_check_deploy_is_clean_with_the_documented_production_settings():
    env = project_env(**documented_environment())
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_flags_the_development_defaults():
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "security.W009" in done.stderr  # the development SECRET_KEY is flagged
