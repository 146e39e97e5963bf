"""Launching Debian's Chromium through Playwright, or skipping with the reason."""

import os
import shutil

from tests.services import missing_service

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> str:
    """Return Chromium's path, or skip (fail under REQUIRE_SERVICES=1) without it."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing_service("Chromium (apt-get install chromium)", CHROMIUM)
    return CHROMIUM if os.path.exists(CHROMIUM) else str(shutil.which("chromium"))


async def launch(playwright):  # type: ignore[no-untyped-def]
    """Launch headless Chromium the way this machine allows."""
    return await playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
