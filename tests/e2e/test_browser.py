"""The chat page and the admin in real headless Chromium, against a real daphne."""

import os
import uuid
from pathlib import Path

import pytest

from tests.browser import launch, require_chromium
from tests.daphne import Daphne, manage, sqlite_env, stored_events
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PASSWORD = "browser-pw-1"
DOCS = Path(__file__).resolve().parents[2] / "docs"


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
            "browser": browser,
            "context": context,
            "username": username,
            "url": f"http://127.0.0.1:{proxy.port}",
        }
        await browser.close()
    await proxy.stop()


async def logged_in_page(site, context=None):
    page = await (context or site["context"]).new_page()
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
    # The tool step is one collapsed line (tool, short parameters, status and duration)...
    tool = page.locator(".run .step-tool.ok")
    summary = await tool.locator("summary").inner_text()
    assert "Tool: calculator" in summary and "expression: 6*7" in summary and "✓" in summary
    assert await tool.locator(".result").is_hidden()
    # ...with the details on demand.
    await tool.locator("summary").click()
    assert "42" in await tool.locator(".result").inner_text()
    assert await page.locator("#thread-title").inner_text() == "calculate 6*7"
    assert page.errors == []


async def test_cut_connection_mid_run_reconnects_and_shows_every_step_once(site):
    page = await logged_in_page(site)
    await send(page, "walk", agent="stepper", steps=12, delay_ms=150)
    await page.locator(".step-thinking").nth(2).wait_for(timeout=10000)
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
    await page.get_by_role("button", name="Stop this run").click()
    await page.wait_for_selector(".run .badge-cancelled", timeout=10000)
    assert await page.locator(".run .run-cancelled").inner_text() == "Cancelled: stopped by user"
    assert await page.get_by_role("button", name="Stop this run").is_hidden()
    assert await page.get_by_role("button", name="Stop run").is_hidden()


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
    events = page.get_by_role("link", name="events, in seq order")
    await events.wait_for(timeout=10000)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        await page.screenshot(path=str(DOCS / "admin-run.png"))
    await events.click()
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
    assert "rejected" in await page.locator(".step-tool .result").text_content()
    assert not page.errors


# -- the page people would choose (each finding of the usability review) ----------


async def mobile_page(site):
    context = await site["browser"].new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    await context.add_cookies(await site["context"].cookies())
    return await logged_in_page(site, context)


async def in_view(page, locator):
    """Tell whether the element is inside the viewport (not scrolled away)."""
    box = await locator.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"]


async def scrolled_to_bottom(page):
    return await page.evaluate(
        "(() => { const t = document.getElementById('timeline');"
        " return t.scrollHeight - t.scrollTop - t.clientHeight < 5; })()"
    )


async def test_a_long_conversation_opens_at_its_newest_run_and_follows_new_ones(site):
    page = await logged_in_page(site)
    for n in range(3):
        await send(page, f"walk {n}", agent="stepper", steps=8, delay_ms=0)
        await page.locator(".run .badge-completed").nth(n).wait_for(timeout=15000)
    assert await page.evaluate("document.getElementById('timeline').scrollHeight") > 1000
    await page.reload()
    await page.wait_for_selector("#conn.conn-online", timeout=15000)
    await page.locator(".run .badge-completed").nth(2).wait_for(timeout=15000)
    await page.wait_for_timeout(300)
    assert await scrolled_to_bottom(page)  # opens at the newest run, not the oldest
    await send(page, "calculate 1+2")
    await page.locator(".run .badge-completed").nth(3).wait_for(timeout=15000)
    await page.wait_for_timeout(200)
    assert await in_view(page, page.locator(".run .answer").last)
    # Reading above while a run goes: its new steps do not yank the view away;
    # "Jump to latest" is offered instead.
    await send(page, "walk on", agent="stepper", steps=10, delay_ms=250)
    await page.locator(".run .badge-running").wait_for(timeout=10000)
    await page.evaluate("document.getElementById('timeline').scrollTop = 0")
    jump = page.get_by_role("button", name="Jump to latest ↓")
    await jump.wait_for(timeout=10000)
    await page.wait_for_timeout(600)  # more steps arrive meanwhile
    assert await page.evaluate("document.getElementById('timeline').scrollTop") < 50
    await jump.click()
    assert await scrolled_to_bottom(page)
    assert await jump.is_hidden()
    await page.locator(".run .badge-completed").nth(4).wait_for(timeout=15000)
    assert await scrolled_to_bottom(page)  # following again
    assert page.errors == []


async def test_stop_stays_reachable_while_a_run_goes(site):
    page = await logged_in_page(site)
    await send(page, "a long one", agent="stepper", steps=20, delay_ms=300)
    await page.locator(".step-thinking").nth(6).wait_for(timeout=15000)
    stop = page.get_by_role("button", name="Stop run")
    assert await stop.is_visible() and await in_view(page, stop)
    # The run's own Stop is in its sticky header, in view too.
    assert await in_view(page, page.get_by_role("button", name="Stop this run"))
    await stop.click()
    await page.wait_for_selector(".run .badge-cancelled", timeout=10000)
    assert await stop.is_hidden()


async def test_a_refused_message_keeps_its_draft_and_the_counter_warns(site):
    page = await logged_in_page(site)
    for n in range(3):  # AGENT_MAX_CONCURRENT_RUNS is 3
        await send(page, f"busy {n}", agent="stepper", steps=30, delay_ms=300)
        await page.locator(".run .badge-running").nth(n).wait_for(timeout=10000)
        await page.get_by_role("button", name="+ New conversation").click()
    draft = "this one must not be lost"
    await page.get_by_label("Message").fill(draft)
    await page.get_by_role("button", name="Send").click()
    notice = page.locator("#notice")
    await notice.wait_for(timeout=10000)
    assert "at most 3 runs" in await notice.inner_text()
    assert "still in the box" in await notice.inner_text()
    assert await page.get_by_label("Message").input_value() == draft
    assert await page.locator("#counter").inner_text() == f"{len(draft)} / 8000"
    await page.get_by_label("Message").fill("x" * 8001)
    assert "over" in (await page.locator("#counter").get_attribute("class"))
    # An empty message says so, from the keyboard and the button alike.
    await page.get_by_label("Message").fill("")
    await page.get_by_label("Message").press("Enter")
    assert await notice.inner_text() == "Type a message first."
    for stop in await page.get_by_role("button", name="Stop this run").all():
        if await stop.is_visible():
            await stop.click()


async def test_each_agent_shows_only_its_own_options_and_queued_runs_show_their_message(site):
    page = await logged_in_page(site)
    await page.get_by_label("Agent").select_option("triage")
    assert await page.get_by_label("Steps").count() == 0
    await page.get_by_label("Agent").select_option("stepper")
    assert await page.get_by_label("Steps").is_visible()
    assert await page.get_by_label("Ask me before each tool call").is_visible()
    await send(page, "first in line", agent="stepper", steps=6, delay_ms=200)
    await page.wait_for_selector(".run .badge-running", timeout=10000)
    await send(page, "second in line", agent="stepper", steps=1, delay_ms=0)
    queued = page.locator(".run", has=page.locator(".badge-queued"))
    await queued.wait_for(timeout=10000)
    assert await queued.locator(".agent").inner_text() == "stepper"
    assert await queued.locator(".question").inner_text() == "second in line"
    await page.locator(".run .badge-completed").nth(1).wait_for(timeout=15000)
    # Timestamps on hover; streamed lines stay after the run completes.
    assert await page.locator(".step-thinking").first.get_attribute("title")
    assert "step 1: 1" in await page.locator(".run .streamed").first.inner_text()
    assert await page.locator(".run .answer").first.inner_text() == "Completed 6 steps."


XSS = (
    "**bold** and `code`\n\n- item\n\n"
    '<img src=x onerror="window.__xss = 1"> <script>window.__xss = 2</script>'
    ' [click](javascript:window.__xss=3) <a href="javascript:window.__xss=4">x</a>'
)


async def test_markdown_is_rendered_and_xss_stays_inert(site):
    page = await logged_in_page(site)
    await page.get_by_label("Agent").select_option("stepper")
    await page.get_by_label("Steps").fill("1")
    await page.get_by_label("Delay (ms)").fill("0")
    await page.get_by_label("Ask me first").fill("Say something")
    await page.get_by_label("Message").fill("markdown please")
    await page.get_by_role("button", name="Send").click()
    box = page.get_by_label("Your answer")
    await box.wait_for(timeout=10000)
    await box.fill(XSS.replace("\\n", "\n"))
    await page.get_by_role("button", name="Send the answer").click()
    await page.wait_for_selector(".run .badge-completed", timeout=10000)
    answer = page.locator(".run .answer")
    assert await answer.locator("strong").inner_text() == "bold"
    assert await answer.locator("code").first.inner_text() == "code"
    assert await answer.locator("script").count() == 0
    assert await answer.locator("[onerror]").count() == 0
    for link in await answer.locator("a").all():
        assert not (await link.get_attribute("href") or "").startswith("javascript:")
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__xss === undefined")
    assert page.errors == []


async def test_the_csp_blocks_an_injected_inline_script(site):
    page = await logged_in_page(site)
    violations = await page.evaluate(
        """() => new Promise((resolve) => {
            const seen = [];
            document.addEventListener("securitypolicyviolation", (e) => {
                seen.push(e.violatedDirective);
                resolve(seen);
            });
            const s = document.createElement("script");
            s.textContent = "window.__inline = 1";
            document.body.append(s);
            setTimeout(() => resolve(seen), 1000);
        })"""
    )
    assert any(v.startswith("script-src") for v in violations)
    assert await page.evaluate("window.__inline === undefined")


async def test_mobile_has_a_drawer_and_no_horizontal_overflow(site):
    page = await mobile_page(site)
    nav = page.get_by_role("navigation", name="Conversations")
    assert not await nav.is_visible()
    url = "https://example.com/" + "a" * 3000
    await send(page, f"calculate 1+1 {url}")
    await page.wait_for_selector(".run .badge-completed", timeout=15000)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    assert await in_view(page, page.get_by_role("button", name="Sign out"))
    assert await in_view(page, page.get_by_role("button", name="Send"))
    await page.get_by_role("button", name="Conversations").click()
    await nav.wait_for(state="visible", timeout=5000)
    assert (
        await page.get_by_role("button", name="Conversations").get_attribute("aria-expanded")
        == "true"
    )
    await nav.locator("#thread-list button").first.click()
    await nav.wait_for(state="hidden", timeout=5000)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        await page.screenshot(path=str(DOCS / "chat-mobile.png"))


async def test_accessibility_contrast_focus_and_a_quiet_live_region(site):
    page = await logged_in_page(site)
    assert await page.evaluate("document.activeElement.id") == "message"
    ratios = await page.evaluate(
        """() => {
            const lum = (rgb) => {
                const [r, g, b] = rgb.match(/\\d+/g).slice(0, 3).map((v) => {
                    const c = Number(v) / 255;
                    return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
                });
                return 0.2126 * r + 0.7152 * g + 0.0722 * b;
            };
            const ratio = (a, b) => {
                const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
                return (x + 0.05) / (y + 0.05);
            };
            return ["message", "agent"].map((id) => {
                const s = getComputedStyle(document.getElementById(id));
                return ratio(s.borderTopColor, s.backgroundColor);
            });
        }"""
    )
    assert all(r >= 3 for r in ratios), ratios
    assert await page.locator("#timeline").get_attribute("aria-live") is None
    assert await page.locator("[aria-live]").count() == 1
    assert await page.get_by_role("status").count() >= 1
    await send(page, "calculate 3*3")
    await page.wait_for_selector(".run .badge-completed", timeout=15000)
    assert await page.locator("#status").inner_text() == "Run completed."
    if os.environ.get("UPDATE_SCREENSHOTS"):
        await page.screenshot(path=str(DOCS / "chat.png"))
