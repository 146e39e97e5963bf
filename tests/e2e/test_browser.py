"""The chat page and the admin in real headless Chromium, against a real daphne."""

import uuid

import pytest

from tests.browser import launch, require_chromium
from tests.daphne import Daphne, manage, sqlite_env, stored_events
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PASSWORD = "browser-pw-1"


@pytest.fixture(scope="module")
def server():
    require_chromium()
    with (
        sqlite_env(WS_START_RATE_PER_SECOND="50", WS_START_RATE_BURST="50") as env,
        Daphne(env) as daphne,
    ):
        yield env, daphne


@pytest.fixture
async def site(server):
    """A new user, a TCP proxy in front of daphne (to cut connections), and a browser."""
    from playwright.async_api import async_playwright

    env, daphne = server
    username = f"b{uuid.uuid4().hex[:10]}"
    manage(env, "ensure_demo_user", "--username", username, "--password", PASSWORD)
    proxy = await TcpProxy(daphne.port).start()
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        context = await browser.new_context(viewport={"width": 1200, "height": 850})
        yield {
            "env": env,
            "proxy": proxy,
            "context": context,
            "username": username,
            "url": f"http://127.0.0.1:{proxy.port}",
        }
        await browser.close()
    await proxy.stop()


async def logged_in_page(site):
    page = await site["context"].new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    await page.goto(site["url"] + "/")
    if "/accounts/login/" in page.url:
        await page.get_by_label("Username").fill(site["username"])
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector("#conn.conn-online", timeout=15000)
    return page


async def send(page, text, agent="triage", steps=None, delay_ms=None):
    await page.get_by_label("Agent").select_option(agent)
    if steps is not None:
        await page.get_by_label("Steps").fill(str(steps))
        await page.get_by_label("Delay (ms)").fill(str(delay_ms))
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send").click()


async def step_labels(page):
    return await page.locator(".run .step .label").all_inner_texts()


async def test_calculate_shows_each_step_in_order_and_the_answer(site):
    page = await logged_in_page(site)
    await send(page, "calculate 6*7")
    await page.wait_for_selector(".run .badge-completed", timeout=15000)
    assert await step_labels(page) == ["Thinking (step 1)", "Tool: calculator", "Thinking (step 2)"]
    assert await page.locator(".run .question").inner_text() == "calculate 6*7"
    assert await page.locator(".run .answer").inner_text() == "6*7 = 42"
    assert "42" in await page.locator(".run .outcome.ok").inner_text()
    assert await page.locator("#thread-title").inner_text() == "calculate 6*7"
    assert page.errors == []


async def test_cut_connection_mid_run_reconnects_and_shows_every_step_once(site):
    page = await logged_in_page(site)
    await send(page, "walk", agent="stepper", steps=12, delay_ms=150)
    await page.wait_for_function("document.querySelectorAll('.step-thinking').length >= 3")
    # the network drops, and stays down for a while: events keep coming, unseen
    site["proxy"].refusing = True
    site["proxy"].cut()
    await page.wait_for_selector("#conn.conn-offline", timeout=5000)
    await page.wait_for_timeout(1200)
    site["proxy"].refusing = False
    await page.wait_for_selector("#conn.conn-online", timeout=20000)
    await page.wait_for_selector(".run .badge-completed", timeout=20000)
    labels = await step_labels(page)
    assert labels.count("Tool: calculator") == 12
    assert [label for label in labels if label.startswith("Thinking")] == [
        f"Thinking (step {i})" for i in range(1, 13)
    ]
    assert await page.locator(".run .answer").inner_text() == "Completed 12 steps."
    # the page drew exactly the stored events, each once
    rendered = await page.evaluate("[...window.chatplatform.state.rendered].sort((a, b) => a - b)")
    assert rendered == [e[0] for e in stored_events(site["env"], site["username"])]
    # and after a reload it still shows each step once
    await page.reload()
    await page.wait_for_selector("#conn.conn-online", timeout=15000)
    await page.wait_for_selector(".run .badge-completed", timeout=15000)
    assert await step_labels(page) == labels
    assert page.errors == []


async def test_stop_button_cancels_the_run(site):
    page = await logged_in_page(site)
    await send(page, "long walk", agent="stepper", steps=60, delay_ms=200)
    await page.wait_for_selector(".step-thinking", timeout=10000)
    await page.get_by_role("button", name="Stop").click()
    await page.wait_for_selector(".run .badge-cancelled", timeout=10000)
    assert await page.locator(".run .run-cancelled").inner_text() == "Cancelled: stopped by user"
    assert await page.get_by_role("button", name="Stop").is_hidden()


async def test_two_tabs_show_the_same_run_live(site):
    first = await logged_in_page(site)
    second = await logged_in_page(site)
    await send(first, "together", agent="stepper", steps=6, delay_ms=150)
    await second.wait_for_selector("#thread-list button", timeout=10000)
    await second.locator("#thread-list button").first.click()
    for page in (first, second):
        await page.wait_for_selector(".run .badge-completed", timeout=15000)
    assert await step_labels(first) == await step_labels(second)
    assert len(await step_labels(second)) == 12


async def test_admin_run_page_opens_in_the_browser(site):
    page = await logged_in_page(site)
    await send(page, "calculate 2+3")
    await page.wait_for_selector(".run .badge-completed", timeout=15000)
    await page.goto(site["url"] + "/admin/agents/run/")
    await page.locator("#result_list tbody tr th a").first.click()
    await page.wait_for_selector("text=agent_completed")
    body = await page.locator("#content").inner_text()
    assert (
        body.index("agent_started") < body.index("tool_completed") < body.index("agent_completed")
    )
    assert "2+3 = 5" in body


async def send_needing_approval(page, text):
    await page.get_by_label("Agent").select_option("stepper")
    await page.get_by_label("Steps").fill("1")
    await page.get_by_label("Delay (ms)").fill("0")
    await page.get_by_label("Ask me before each tool call").check()
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send").click()


async def test_approve_in_one_tab_and_the_card_resolves_in_the_other(site):
    first = await logged_in_page(site)
    second = await logged_in_page(site)
    await send_needing_approval(first, "approve me")
    # The other tab marks the conversation that waits for an answer.
    await second.wait_for_selector("#thread-list button.needs-input", timeout=10000)
    await second.locator("#thread-list button").first.click()
    for page in (first, second):
        card = page.get_by_role("group", name="Approval needed: calculator")
        await card.wait_for(timeout=10000)
        assert '"expression": "1*1"' in await card.locator(".params").inner_text()
    # From the keyboard: focus Approve in the second tab and press Enter.
    await second.get_by_role("button", name="Approve calculator").focus()
    await second.keyboard.press("Enter")
    for page in (first, second):
        await page.wait_for_selector(".input-card.input-done", timeout=10000)
        assert await page.locator(".input-card .input-status").inner_text() == "Approved"
        await page.wait_for_selector(".run .badge-completed", timeout=10000)
        assert await page.get_by_role("button", name="Approve calculator").count() == 0
        assert "Tool: calculator" in await step_labels(page)
    assert not first.errors and not second.errors


async def test_a_pending_card_is_still_there_after_a_reload_and_can_be_rejected(site):
    page = await logged_in_page(site)
    await send_needing_approval(page, "reload me")
    await page.wait_for_selector(".input-card", timeout=10000)
    await page.reload()
    await page.wait_for_selector("#conn.conn-online", timeout=15000)
    card = page.get_by_role("group", name="Approval needed: calculator")
    await card.wait_for(timeout=10000)
    # Edit with bad JSON is refused on the page; then reject.
    await page.get_by_role("button", name="Edit the parameters of calculator").click()
    editor = page.get_by_label("Parameters for calculator (JSON)")
    await editor.fill("{not json")
    await page.get_by_role("button", name="Run calculator with the edited parameters").click()
    assert "Not valid JSON" in await card.locator(".input-status").inner_text()
    await page.get_by_role("button", name="Reject calculator").press("Enter")
    await page.wait_for_selector(".input-card.input-done", timeout=10000)
    assert await card.locator(".input-status").inner_text() == "Rejected"
    await page.wait_for_selector(".run .badge-completed", timeout=10000)
    assert "rejected" in await page.locator(".step-tool .outcome").inner_text()
    assert not page.errors
