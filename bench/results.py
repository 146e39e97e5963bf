"""Writing a benchmark's section of bench/RESULTS.md, keeping the other sections."""

import json
import os
import platform
import re
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is rewritten by the script named in it.\n"


def machine() -> str:
    """Describe the machine and the versions that matter."""
    import os

    packages = ", ".join(
        f"{name} {version(name)}" for name in ("django", "channels", "daphne", "channels-redis")
    )
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {packages}"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section called `name` in RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    block = f"<!-- {name}:start -->\n{body.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(
        rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S
    )
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    RESULTS.write_text(text)


FIGURES = Path(__file__).with_name("figures.json")


def record(name: str, value: float) -> None:
    """Keep one measured figure for the targets table (bench/targets.py)."""
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    figures[name] = value
    FIGURES.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
