"""Take the README's screenshots: the chat page mid-run and a run's admin page.

Usage: .venv/bin/python docs/make_screenshots.py   (needs Debian's chromium)
"""

import asyncio
import sys
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import launch  # noqa: E402
from tests.daphne import Daphne, manage, sqlite_env  # noqa: E402


async def shoot(url: str) -> None:
    """Log in, start runs, and capture both pages."""
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        await page.goto(url + "/")
        await page.get_by_label("Username").fill("demo")
        await page.get_by_label("Password").fill("demo")
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_selector("#conn.conn-online")
        await page.get_by_label("Message").fill("calculate 6*7")
        await page.get_by_role("button", name="Send").click()
        await page.wait_for_selector(".badge-completed")
        await page.get_by_label("Agent").select_option("stepper")
        await page.get_by_label("Steps").fill("6")
        await page.get_by_label("Delay (ms)").fill("700")
        await page.get_by_label("Message").fill("walk me through six steps")
        await page.get_by_role("button", name="Send").click()
        await page.wait_for_function("document.querySelectorAll('.step-thinking').length >= 4")
        await page.screenshot(path=str(ROOT / "docs" / "chat.png"))
        await page.wait_for_selector(".run:last-child .badge-completed", timeout=20000)
        await page.goto(url + "/admin/agents/run/")
        await page.locator("#result_list tbody tr th a").last.click()
        await page.wait_for_selector("text=agent_completed")
        await page.locator(".inline-group").scroll_into_view_if_needed()
        await page.evaluate("window.scrollBy(0, -140)")
        await page.screenshot(path=str(ROOT / "docs" / "admin-run.png"), full_page=False)
        await browser.close()


def main() -> None:
    """Serve a fresh database with daphne and take the screenshots."""
    with sqlite_env() as env, Daphne(env) as server:
        manage(env, "ensure_demo_user")
        asyncio.run(shoot(f"http://127.0.0.1:{server.port}"))
    print("wrote docs/chat.png and docs/admin-run.png")


if __name__ == "__main__":
    main()
