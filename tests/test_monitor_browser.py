"""The dashboard in a real browser: Debian's chromium driven by Playwright.

Never a browser that Playwright downloads: `.ci/install-system-deps` installs chromium.
Without it these tests fail (a skipped browser test would hide a broken dashboard).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from _monitor_server import serve
from _monitor_trackers import agent, lane, tracker, write
from orchestree.access_tracker import now_iso

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EVIL = "<img src=x onerror=alert(1)>"
LOG = f"step 1\n{EVIL}\nstep 2\n"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# The dashboard polls every second; a change must show within 2 s. The wait below is
# longer so a busy CI machine does not turn a slow frame into a failure.
UPDATE_WAIT_MS = 8000


def run(progress: str = "writing the projection", status: str = "running") -> dict[str, Any]:
    lanes = {
        "db-projection": lane(
            name="DB projection",
            status=status,
            priority="high",
            progress=progress,
            attempts=1,
            max_attempts=2,
            results=["docs/_generated/db-projection/report.md"],
            cost_usd=0.12,
            started_at=now_iso(),
        ),
        "xss": lane(name=EVIL, progress=EVIL, status="blocked", error=f"because {EVIL}"),
        "api-docs": lane(status="failed", error="exit code 2", priority="low"),
        "setup": lane(status="merged", priority="medium"),
        "tests": lane(status="completed", priority="medium", no_changes=True),
        "lint": lane(status="pending", priority="low"),
    }
    agents = {
        "agent-db-projection": agent("db-projection", status="running"),
        "agent-api-docs": agent("api-docs", status="failed", exit_code=2),
        "agent-setup": agent("setup", status="completed", exit_code=0),
    }
    return tracker(lanes, agents, phase=3, status="running", repo="/srv/shop", updated_at=now_iso())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run `.ci/install-system-deps` (as root) to install "
            "Debian's chromium for the browser tests"
        )
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write(tmp_path / ".orchestration" / "tracker.json", run())
    logs = tmp_path / ".orchestration" / "logs"
    logs.mkdir()
    (logs / "agent-db-projection.log").write_text(LOG, encoding="utf-8")
    return tmp_path


@pytest.fixture
def page(browser: Browser, repo: Path) -> Iterator[tuple[Page, list[Dialog], Path]]:
    dialogs: list[Dialog] = []
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.on("dialog", lambda d: (dialogs.append(d), d.dismiss()))
    tab.on("pageerror", lambda e: errors.append(str(e)))
    with serve(repo) as port:
        tab.goto(f"http://127.0.0.1:{port}/")
        expect(tab.locator("#lanes tbody tr")).to_have_count(6)
        yield tab, dialogs, repo
        context.close()
    assert errors == [], "the page raised JavaScript errors"


def lane_ids(tab: Page) -> list[str]:
    return [
        str(x)
        for x in tab.eval_on_selector_all("#lanes tbody tr", "rs => rs.map(r => r.dataset.lane)")
    ]


def test_the_dashboard_shows_lanes_agents_statistics_and_warnings(
    page: tuple[Page, list[Dialog], Path],
) -> None:
    tab, _, _ = page
    expect(tab.locator("#repo")).to_have_text("/srv/shop (main)")
    expect(tab.locator("#phase-label")).to_have_text("phase 3/4 execute")
    expect(tab.locator("#completion-pct")).to_have_text("67% (4/6)")
    expect(tab.locator('[data-stat="lanes"] .value')).to_have_text("6")
    expect(tab.locator('[data-stat="running"] .value')).to_have_text("1")
    expect(tab.locator('[data-stat="merged"] .value')).to_have_text("1")
    expect(tab.locator('[data-stat="cost"] .value')).to_have_text("$0.12")
    row = tab.locator('tr[data-lane="db-projection"]')
    expect(row.locator("td.status")).to_have_text("running")
    expect(row.locator("td.lane")).to_have_text("db-projection · DB projection")
    expect(row.locator("td.progress")).to_have_text("writing the projection")
    expect(row.locator("td.results")).to_have_text("docs/_generated/db-projection/report.md")
    # Lanes that need a look come first.
    assert lane_ids(tab) == ["db-projection", "api-docs", "xss", "lint", "tests", "setup"]
    expect(tab.locator(".agent")).to_have_count(3)
    expect(tab.locator('.agent[data-status="failed"] .sym')).to_have_text("✗")
    expect(tab.locator("#warnings li")).to_have_count(3)
    expect(tab.locator('#warnings li[data-kind="failed"]')).to_have_text(
        "lane api-docs failed: exit code 2; log: .orchestration/logs/agent-api-docs.log"
    )
    expect(tab.locator('#warnings li[data-kind="no_changes"]')).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_the_dashboard_follows_the_tracker_without_a_reload(
    page: tuple[Page, list[Dialog], Path],
) -> None:
    tab, _, repo = page
    tab.evaluate("window.sameDocument = true")
    data = run(progress="all projections written", status="completed")
    data["lanes"]["brand-new"] = lane(status="running", progress="just started")
    write(repo / ".orchestration" / "tracker.json", data)
    row = tab.locator('tr[data-lane="db-projection"]')
    expect(row.locator("td.status")).to_have_text("completed", timeout=UPDATE_WAIT_MS)
    expect(row.locator("td.progress")).to_have_text("all projections written")
    expect(tab.locator('tr[data-lane="brand-new"] td.progress')).to_have_text("just started")
    expect(tab.locator('[data-stat="lanes"] .value')).to_have_text("7")
    assert tab.evaluate("window.sameDocument") is True, "updated in place, not reloaded"

    (repo / ".orchestration" / "tracker.json").write_text("{", encoding="utf-8")
    expect(tab.locator("#notice")).to_contain_text(
        "showing the last good read", timeout=UPDATE_WAIT_MS
    )
    expect(row.locator("td.status")).to_have_text("completed")
    write(repo / ".orchestration" / "tracker.json", run())
    expect(tab.locator("#notice")).to_be_hidden(timeout=UPDATE_WAIT_MS)


def test_tracker_text_is_shown_as_text_and_runs_nothing(
    page: tuple[Page, list[Dialog], Path],
) -> None:
    tab, dialogs, _ = page
    row = tab.locator('tr[data-lane="xss"]')
    expect(row.locator("td.lane")).to_have_text(f"xss · {EVIL}")
    expect(row.locator("td.progress")).to_have_text(EVIL)
    expect(tab.locator('#warnings li[data-kind="blocked"]')).to_have_text(
        f"lane xss is blocked: because {EVIL}"
    )
    row.locator("button.log-button").click()
    tab.locator('tr[data-lane="db-projection"] button.log-button').click()
    expect(tab.locator("#log-text")).to_have_text(LOG)
    tab.wait_for_timeout(2500)  # two more polls: time for anything injected to fire
    assert tab.locator("img").count() == 0
    assert dialogs == []


def test_a_lane_log_tail_opens_on_demand(page: tuple[Page, list[Dialog], Path]) -> None:
    tab, _, _ = page
    expect(tab.locator("#log-panel")).to_be_hidden()
    tab.locator('tr[data-lane="api-docs"] button.log-button').click()
    expect(tab.locator("#log-panel")).to_be_visible()
    expect(tab.locator("#log-text")).to_have_text("lane api-docs has no log yet")
    tab.locator('tr[data-lane="db-projection"] button.log-button').click()
    expect(tab.locator("#log-lane")).to_have_text("db-projection")
    expect(tab.locator("#log-meta")).to_have_text(
        f".orchestration/logs/agent-db-projection.log · {len(LOG.encode())} bytes"
    )
    tab.locator("#log-close").click()
    expect(tab.locator("#log-panel")).to_be_hidden()


def test_lanes_sort_by_the_column_clicked(page: tuple[Page, list[Dialog], Path]) -> None:
    tab, _, _ = page
    tab.locator('th[data-sort="id"]').click()
    assert lane_ids(tab) == ["api-docs", "db-projection", "lint", "setup", "tests", "xss"]
    tab.locator('th[data-sort="id"]').click()
    assert lane_ids(tab) == ["xss", "tests", "setup", "lint", "db-projection", "api-docs"]
    tab.locator('th[data-sort="status"]').click()
    assert lane_ids(tab)[:2] == ["db-projection", "api-docs"]
    tab.locator('th[data-sort="priority"]').click()
    assert lane_ids(tab)[0] == "db-projection"
    assert lane_ids(tab)[-2:] == ["api-docs", "lint"]
    # The order holds across refreshes.
    tab.wait_for_timeout(1200)
    assert lane_ids(tab)[-2:] == ["api-docs", "lint"]


def first_hour_run() -> dict[str, Any]:
    """What the first hour on a real repository left: 24 lanes, six that changed nothing,
    one real failure, a conflict, and an agent each (issue 21, item 13)."""
    lanes: dict[str, dict[str, Any]] = {}
    agents: dict[str, dict[str, Any]] = {}
    for i in range(24):
        lane_id = f"fix-{i:02d}"
        status = "failed" if i == 7 else "conflict" if i == 9 else "completed"
        status = "running" if i >= 18 else status
        lanes[lane_id] = lane(
            name=f"Make tests/test_{i:02d}.py pass",
            status=status,
            attempts=1,
            progress="reading the failing tests" if status == "running" else None,
            error="exited with code 1: pytest failed" if status == "failed" else None,
            no_changes=status == "completed" and i < 6,
            merge={"status": "conflict", "conflicts": ["src/click/core.py"]}
            if status == "conflict"
            else {},
            started_at=now_iso(),
        )
        agents[f"agent-{lane_id}"] = agent(lane_id, status="running" if i >= 18 else "completed")
    return tracker(
        lanes, agents, phase=3, status="running", repo="/srv/click", updated_at=now_iso()
    )


def test_the_lanes_show_without_scrolling_at_1400_by_1000(browser: Browser, tmp_path: Path) -> None:
    write(tmp_path / ".orchestration" / "tracker.json", first_hour_run())
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    try:
        with serve(tmp_path) as port:
            tab.goto(f"http://127.0.0.1:{port}/")
            expect(tab.locator("#lanes tbody tr")).to_have_count(24)
            # The failure and the conflict come first; the six notices are one line.
            warnings = tab.locator("#warnings li")
            expect(warnings).to_have_count(3)
            expect(warnings.nth(0)).to_have_attribute("data-kind", "failed")
            expect(warnings.nth(1)).to_have_attribute("data-kind", "conflict")
            expect(warnings.nth(2)).to_contain_text("6 lanes finished without changing any file")
            ARTIFACTS.mkdir(exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / "dashboard-1400x1000.png"))
            assert tab.evaluate("window.scrollY") == 0
            header = tab.locator("#lanes thead").bounding_box()
            rows = [tab.locator("#lanes tbody tr").nth(i).bounding_box() for i in range(15)]
            assert header is not None
            assert all(rows)
            # The table's header and its first 15 rows lie inside the first screen (the
            # 24 agents are listed below the lanes).
            assert header["y"] >= 0
            assert all(r is not None and r["y"] + r["height"] <= 1000 for r in rows), rows
    finally:
        context.close()
