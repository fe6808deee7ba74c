"""The dashboard in a real browser: Playwright driving Debian's chromium (nothing downloaded).

Screenshots of every step go to ``$FLOWTASKD_ARTIFACTS/web`` (default ``.artifacts/web``),
so a failed run leaves what the browser showed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web_harness import WebDaemon, web_daemon

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]
playwright_sync = pytest.importorskip("playwright.sync_api")
Page = playwright_sync.Page
expect = playwright_sync.expect
expect.set_options(timeout=15_000)  # a busy 2-core machine: conditions, not sleeps, so cheap

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PIPELINE = """\
name: pipeline
description: two steps, the first takes a moment
schedule: "15 2 * * *"
params: {who: world, times: 2}
steps:
  - Command: {name: prepare, command: [sh, -c, "sleep 1.5; echo prepared"]}
  - Command: {name: greet, command: [sh, -c, "echo hello {who} x{times}"], depends: [prepare]}
"""
LONG = "name: long\nsteps:\n  - Command: {name: wait, command: [sleep, '60']}\n"
FAIL = "name: flaky\nsteps:\n  - Command: {name: boom, command: [sh, -c, 'exit 4']}\n"
# its first attempt fails after a moment (and leaves a marker), the retry succeeds
FLAP = """\
name: flap
steps:
  - Command:
      name: flap
      command: [sh, -c, "test -e {marker} && sleep 1 && exit 0; touch {marker}; sleep 2; exit 3"]
      retry: {{attempts: 2, delay: 0.5s}}
  - Command: {{name: after, command: [sleep, "1"], depends: [flap]}}
"""
SHOTS = Path(os.environ.get("FLOWTASKD_ARTIFACTS", ".artifacts")) / "web"


@pytest.fixture(scope="module")
def wd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDaemon]:
    flap = FLAP.format(marker=tmp_path_factory.mktemp("flap") / "tried")
    tasks = {"pipeline.yaml": PIPELINE, "long.yaml": LONG, "flaky.yaml": FAIL, "flap.yaml": flap}
    with web_daemon(tasks) as d:
        yield d


@pytest.fixture
def page(wd: WebDaemon) -> Iterator[Page]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = browser.new_context(base_url=wd.base, viewport={"width": 1280, "height": 900})
            context.set_default_timeout(15_000)
            p = context.new_page()
            p.goto("/tasks")
            expect(p).to_have_url(re.compile(r"/login\?next="))
            p.fill("#token", wd.token)
            p.click("button[type=submit]")
            expect(p).to_have_url(re.compile(r"/tasks$"))
            yield p
        finally:
            browser.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_log_in_see_tasks_trigger_watch_live_and_read_the_log(page: Page) -> None:
    shot(page, "01-tasks")
    row = page.locator("tr[data-task=pipeline]")
    expect(row).to_contain_text("every day at 02:15")
    expect(page.locator("tr[data-task=long]")).to_be_visible()
    page.click("a[href='/tasks/pipeline']")
    expect(page.locator("svg.dag g.node")).to_have_count(2)
    page.fill("#p-who", "browser")
    shot(page, "02-task")
    page.click("#trigger button[type=submit]")
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f]+$"))
    page.evaluate("window.__notReloaded = true")
    prepare = page.locator("svg.dag g.node[data-step=prepare]")
    greet = page.locator("svg.dag g.node[data-step=greet]")
    expect(prepare).to_have_attribute("data-state", "running")  # seen while it runs
    shot(page, "03-run-running")
    expect(prepare).to_have_attribute("data-state", "done")
    expect(greet).to_have_attribute("data-state", "done")
    expect(page.locator("#run-state")).to_contain_text("done")
    expect(page.locator("tr[data-step=greet] td.st")).to_contain_text("✓ done")
    expect(page.locator("body")).to_have_attribute("data-refreshed", "true")
    expect(page.locator("tr[data-step=greet] td.exit")).to_have_text("0")
    expect(page.locator("#timeline svg.gantt rect.bar")).to_have_count(2)
    assert page.evaluate("window.__notReloaded") is True  # updated in place, no reload
    page.click("tr[data-step=greet] button.log-open")
    expect(page.locator("#log")).to_have_text("hello browser x2\n")
    shot(page, "04-run-done-log")


def test_the_timeline_shows_attempts_live(page: Page) -> None:
    page.goto("/tasks/flap")
    page.click("#trigger button[type=submit]")
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f]+$"))
    page.evaluate("window.__notReloaded = true")
    bar = "#timeline svg.gantt rect.bar[data-step={}][data-attempt='{}']"
    state = page.locator("#run-state")
    first, second = page.locator(bar.format("flap", 1)), page.locator(bar.format("flap", 2))
    # each of these is seen while the run still goes: drawn from the events, not a reload
    expect(first).to_have_attribute("data-state", "running")
    expect(first).to_have_attribute("data-state", "failed")
    expect(second).to_have_attribute("data-state", "running")
    expect(state).not_to_contain_text("done")
    shot(page, "05-timeline-retry")
    right, width = page.evaluate(  # in one go: the picture is redrawn while the bar grows
        """() => { const svg = document.querySelector("#timeline svg.gantt");
        const r = svg.querySelector("rect.bar[data-step=flap][data-attempt='2']");
        return [Number(r.getAttribute("x")) + Number(r.getAttribute("width")),
                Number(svg.getAttribute("width"))]; }"""
    )
    assert right <= width  # the running attempt's bar is inside the picture
    after = page.locator(bar.format("after", 1))
    expect(after).to_have_attribute("data-state", "running")
    expect(second).to_have_attribute("data-state", "done")
    expect(state).to_contain_text("done")
    expect(page.locator("#timeline svg.gantt rect.bar")).to_have_count(3)
    expect(after).to_have_attribute("data-state", "done")
    assert float(after.get_attribute("x") or 0) > float(first.get_attribute("x") or 0)
    assert page.evaluate("window.__notReloaded") is True


def test_cancel_a_long_run(page: Page) -> None:
    page.goto("/tasks/long")
    page.click("#trigger button[type=submit]")
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f]+$"))
    node = page.locator("svg.dag g.node[data-step=wait]")
    expect(node).to_have_attribute("data-state", "running")
    page.click("#cancel")
    expect(page.locator("#run-state")).to_contain_text("cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    shot(page, "06-cancelled")


def test_retry_a_failed_run(page: Page) -> None:
    page.goto("/tasks/flaky")
    page.click("#trigger button[type=submit]")
    expect(page.locator("#run-state")).to_contain_text("failed")
    first = page.url
    page.click("#retry")
    expect(page).not_to_have_url(first)
    expect(page.locator("#run-state")).to_contain_text("failed")


def test_pause_a_task_greys_its_next_fire(page: Page) -> None:
    row = page.locator("tr[data-task=pipeline]")
    row.locator("button[data-action=pause]").click()
    expect(page.locator("tr[data-task=pipeline]")).to_have_class(re.compile("paused"))
    expect(page.locator("tr[data-task=pipeline] td.next-fire")).to_contain_text("paused")
    shot(page, "07-paused")
    page.locator("tr[data-task=pipeline] button[data-action=unpause]").click()
    expect(page.locator("tr[data-task=pipeline]")).not_to_have_class(re.compile("paused"))


def test_live_and_daemon_pages_and_the_theme(page: Page, wd: WebDaemon) -> None:
    page.click("nav >> text=Live")
    expect(page.locator("#conn")).to_contain_text("live")
    wd.api("POST", "/tasks/flaky/runs")
    expect(page.locator("#events")).to_contain_text("completed")
    shot(page, "08-live")
    page.click("nav >> text=Daemon")
    expect(page.locator("main")).to_contain_text("Uptime")
    page.click("#theme")
    theme = page.evaluate("document.documentElement.dataset.theme")
    assert theme in ("dark", "light")
    shot(page, "08-daemon")
    page.click("nav >> text=API")
    expect(page.locator("main")).to_contain_text("/api/v1/runs/{run_id}/cancel")
