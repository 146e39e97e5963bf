"""Dependencies point one way: chatplatform -> realtime -> agents, with no cycles."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LINT = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command; "
    "sys.exit(lint_imports_command())",
]


def lint_imports() -> subprocess.CompletedProcess[str]:
    return subprocess.run(LINT, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_layers_and_acyclic_contracts_are_kept():
    done = lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_a_domain_module_importing_a_transport_breaks_the_contract():
    probe = ROOT / "agents" / "_layer_probe.py"
    probe.write_text('"""A planted violation."""\n\nimport realtime.hub  # noqa: F401\n')
    try:
        done = lint_imports()
    finally:
        probe.unlink()
    assert done.returncode != 0
    assert "agents._layer_probe -> realtime.hub" in done.stdout


def test_a_cycle_between_sibling_modules_breaks_the_contract():
    first, second = ROOT / "agents" / "_cycle_a.py", ROOT / "agents" / "_cycle_b.py"
    first.write_text('"""A planted cycle."""\n\nimport agents._cycle_b  # noqa: F401\n')
    second.write_text('"""A planted cycle."""\n\nimport agents._cycle_a  # noqa: F401\n')
    try:
        done = lint_imports()
    finally:
        first.unlink()
        second.unlink()
    assert done.returncode != 0
    assert "no import cycles" in done.stdout and "BROKEN" in done.stdout
