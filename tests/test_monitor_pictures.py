"""The dashboard's pictures in a real browser (Debian's chromium, as test_monitor_browser.py):
the lane graph, the attempts' timeline and a lane's diff beside its log (issue 16).

The run is real: `scripts/dashboard_screenshot.py`'s twelve shell-scripted lanes in three
dependency levels, executed and merged by orchestree in a real repository (one lane fails
once and is retried, one fails, two conflict, one has markup in its name and its diff).
"""

from __future__ import annotations

import importlib.util
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from _monitor_server import request, serve
from _monitor_trackers import big_tracker, lane, tracker, write
from orchestree.access_tracker import loads_strict

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 20_000  # a generous wait for a loaded machine; the page polls every second


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dashboard_screenshot", ROOT / "scripts" / "dashboard_screenshot.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SHOT = _script()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real run, made once for the module."""
    return Path(SHOT.build_run(tmp_path_factory.mktemp("pictures")))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(SHOT.CHROMIUM, os.X_OK):
        pytest.fail(f"{SHOT.CHROMIUM} is missing: run `.ci/install-system-deps` (as root)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=SHOT.CHROMIUM, args=SHOT.BROWSER_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Tab:
    """A page on the dashboard, with every request it made and every error it raised."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[Request] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        # A lambda: Playwright marks its handlers, which a builtin method cannot carry.
        page.on("request", lambda r: self.requests.append(r))  # noqa: PLW0108
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))


@pytest.fixture
def open_tab(browser: Browser) -> Iterator[Any]:
    contexts = []

    def opener(repo: Path, port: int) -> Tab:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        tab = Tab(context.new_page())
        tab.page.goto(f"http://127.0.0.1:{port}/")
        return tab

    yield opener
    for context in contexts:
        context.close()


def svg_texts(page: Page, selector: str) -> list[str]:
    return [str(t) for t in page.eval_on_selector_all(selector, "ns => ns.map(n => n.textContent)")]


def test_the_graph_shows_every_lane_and_every_dependency_of_a_real_run(
    shop: Path, open_tab: Any
) -> None:
    lanes = SHOT.lanes(Path("/unused"))
    edges = {
        (dep, lane_id) for lane_id, spec in lanes.items() for dep in spec.get("depends_on", [])
    }
    assert len(lanes) == 12
    assert len(edges) == 12
    with serve(shop) as port:
        tab = open_tab(shop, port)
        page = tab.page
        nodes = page.locator("#graph svg g.node")
        expect(nodes).to_have_count(12, timeout=WAIT_MS)
        assert sorted(svg_texts(page, "#graph svg g.node > text")) == sorted(lanes)
        drawn = page.eval_on_selector_all(
            "#graph svg path.edge", "ps => ps.map(p => [p.dataset.from, p.dataset.to])"
        )
        assert len(drawn) == len(edges)
        assert {(str(a), str(b)) for a, b in drawn} == edges
        # Three levels, left to right: a lane sits right of every lane it depends on.
        x = {
            str(k): float(v)
            for k, v in page.eval_on_selector_all(
                "#graph svg g.node",
                "gs => gs.map(g => [g.dataset.lane, g.getBoundingClientRect().x])",
            )
        }
        assert len({round(v) for v in x.values()}) == 3
        assert all(x[dep] < x[lane_id] for dep, lane_id in edges)
        # Coloured by status: the run's real outcomes.
        status = {
            str(k): str(v)
            for k, v in page.eval_on_selector_all(
                "#graph svg g.node", "gs => gs.map(g => [g.dataset.lane, g.dataset.status])"
            )
        }
        assert status["flaky"] == "failed"
        assert status["changelog"] == "blocked"
        assert status["cli"] == "merged"
        stroke = page.eval_on_selector(
            '#graph g.node[data-lane="flaky"] rect', "r => getComputedStyle(r).stroke"
        )
        assert stroke == "rgb(248, 81, 73)"  # --failed
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#graph-section").screenshot(path=str(ARTIFACTS / "dashboard-graph.png"))
        assert {r.method for r in tab.requests} == {"GET"}
        assert tab.errors == []


def test_the_timeline_shows_a_retried_lane_as_two_bars(shop: Path, open_tab: Any) -> None:
    with serve(shop) as port:
        _, _, raw = request(port)
        timeline = loads_strict(raw.decode())["timeline"]
        # From events.jsonl: the first attempt of `cli` failed and was retried.
        outcomes = [bar["outcome"] for bar in timeline["lanes"][SHOT.RETRIED]]
        assert outcomes == ["retried", "merged"]
        assert "e2e" not in timeline["lanes"]  # blocked before it ever started
        tab = open_tab(shop, port)
        page = tab.page
        bars = page.locator(f'#timeline rect.bar[data-lane="{SHOT.RETRIED}"]')
        expect(bars).to_have_count(2, timeout=WAIT_MS)
        assert [bars.nth(i).get_attribute("data-outcome") for i in range(2)] == outcomes
        first, second = (bars.nth(i).bounding_box() for i in range(2))
        assert first is not None
        assert second is not None
        assert first["x"] + first["width"] <= second["x"] + 0.5  # one after the other
        expect(page.locator('#timeline rect.bar[data-lane="schema"]')).to_have_count(1)
        expect(page.locator('#timeline rect.bar[data-lane="flaky"]')).to_have_attribute(
            "data-outcome", "failed"
        )
        expect(page.locator('#timeline rect.bar[data-lane="storage"]')).to_have_attribute(
            "data-outcome", "conflict"
        )
        # The run's start and now are marked.
        expect(page.locator("#timeline line.mark.start")).to_have_count(1)
        expect(page.locator("#timeline line.mark.now")).to_have_count(1)
        labels = svg_texts(page, "#timeline text.mark-label")
        assert labels[0].startswith("start ")
        assert labels[1].startswith("now")
        page.locator("#timeline-section").screenshot(path=str(ARTIFACTS / "dashboard-timeline.png"))
        assert {r.method for r in tab.requests} == {"GET"}
        assert tab.errors == []


def test_a_lane_diff_opens_from_its_row_beside_its_log_and_markup_stays_text(
    shop: Path, open_tab: Any
) -> None:
    with serve(shop) as port:
        tab = open_tab(shop, port)
        page = tab.page
        row = page.locator(f'tr[data-lane="{SHOT.SHOWN}"]')
        expect(row.locator("td.lane")).to_have_text(f"{SHOT.SHOWN} · {SHOT.EVIL_NAME}")
        expect(page.locator("#log-panel")).to_be_hidden()
        row.locator("button.diff-button").click()
        expect(page.locator("#log-panel")).to_be_visible()
        expect(page.locator("#lane-name")).to_have_text(SHOT.EVIL_NAME)
        diff = page.locator("#diff-text")
        expect(diff).to_contain_text("+++ b/docs/notes.md", timeout=WAIT_MS)
        added = [line.strip() for line in svg_texts(page, "#diff-text .dl.add")]
        assert added == ["+# Notes", *(f"+{line}" for line in SHOT.EVIL_LINES)]
        expect(page.locator("#diff-text .dl.hunk")).to_have_count(1)
        expect(page.locator("#diff-text .dl.file").first).to_have_text(
            "diff --git a/docs/notes.md b/docs/notes.md\n"
        )
        expect(page.locator("#diff-meta")).to_have_text("1 file · +3 −0")
        # The log tail beside it.
        expect(page.locator("#log-text")).to_contain_text("attempt 1", timeout=WAIT_MS)
        diff_box = page.locator("#diff-text").bounding_box()
        log_box = page.locator("#log-text").bounding_box()
        assert diff_box is not None
        assert log_box is not None
        assert diff_box["x"] + diff_box["width"] <= log_box["x"]  # side by side
        assert abs(diff_box["y"] - log_box["y"]) < 40
        # Colours by line kind.
        colour = page.eval_on_selector("#diff-text .dl.add", "s => getComputedStyle(s).color")
        assert colour == "rgb(123, 201, 111)"  # --completed
        page.wait_for_timeout(2500)  # two more polls: time for anything injected to run
        assert page.evaluate("window.pwned") is None
        assert page.locator("img").count() == 0
        assert page.locator("script").count() == 2  # the page's own two
        assert tab.dialogs == []
        page.locator("#log-panel").screenshot(path=str(ARTIFACTS / "dashboard-diff.png"))
        # A node of the graph opens the same panel.
        page.locator('#graph g.node[data-lane="cli"]').click()
        expect(page.locator("#log-lane")).to_have_text("cli")
        expect(page.locator("#diff-text")).to_contain_text("+main = None", timeout=WAIT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-pictures.png"), full_page=True)
        methods = {r.method for r in tab.requests}
        paths = {r.url.split(f":{port}", 1)[1] for r in tab.requests}
        assert methods == {"GET"}
        assert "/api/lanes/notes/diff" in paths
        assert tab.errors == []


def test_radar_findings_are_dashed_edges(open_tab: Any, tmp_path: Path) -> None:
    found = [
        {"lanes": ["api", "storage"], "files": ["src/app.py"], "since": "2026-01-01T11:30:00Z"},
        {"lanes": ["web", "<base>"], "files": ["web/index.html"], "since": "2026-01-01T11:30:00Z"},
    ]
    lanes = {
        "api": lane(status="running", started_at="2026-01-01T11:10:00.000Z"),
        "storage": lane(status="running", started_at="2026-01-01T11:11:00.000Z"),
        "web": lane(status="pending", depends_on=["api"]),
    }
    write(tmp_path / ".orchestration" / "tracker.json", tracker(lanes, radar=found))
    with serve(tmp_path) as port:
        page = open_tab(tmp_path, port).page
        radar = page.locator("#graph svg path.radar")
        expect(radar).to_have_count(1, timeout=WAIT_MS)
        assert radar.get_attribute("data-from") == "api"
        assert radar.get_attribute("data-to") == "storage"
        dash = radar.evaluate("p => getComputedStyle(p).strokeDasharray")
        assert dash not in ("", "none")
        expect(page.locator("#graph svg path.edge")).to_have_count(1)
        expect(page.locator('#graph g.node[data-lane="web"] rect.radar-base')).to_have_count(1)
        # Without events.jsonl the tracker's own times still draw the running attempts.
        expect(page.locator('#timeline rect.bar[data-outcome="running"]')).to_have_count(2)


def test_at_500_lanes_the_pictures_wait_for_a_click(open_tab: Any, tmp_path: Path) -> None:
    write(tmp_path / ".orchestration" / "tracker.json", big_tracker(500))
    with serve(tmp_path) as port:
        page = open_tab(tmp_path, port).page
        expect(page.locator("#lanes tbody tr")).to_have_count(500, timeout=30_000)
        button = page.locator("#graph button.draw-button")
        expect(button).to_have_text("draw the pictures (500 lanes)")
        assert page.locator("#graph svg").count() == 0
        button.click()
        expect(page.locator("#graph svg g.node")).to_have_count(500, timeout=WAIT_MS)
        expect(page.locator("#timeline rect.bar")).to_have_count(
            sum(1 for i in range(500) if i % 7 not in (3, 5)), timeout=WAIT_MS
        )
        # Drawn once, not on every poll: the page's render time stays small.
        page.wait_for_timeout(2500)
        render_ms = float(page.evaluate("window.orchestreeRenderMs"))
        print(f"dashboard render at 500 lanes with the pictures drawn: {render_ms:.1f} ms")
        assert render_ms < 100


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_readme_screenshot_is_the_scripts_picture_of_a_real_run(
    shop: Path, browser: Browser
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/dashboard.png)" in readme
    assert "scripts/dashboard_screenshot.py" in readme
    width, height = png_size(ROOT / "docs" / "dashboard.png")
    assert width == 1400
    assert height > 1000
    # The script's own camera, on this test's run: what it committed, it can make again.
    out = ARTIFACTS / "dashboard-readme.png"
    out.unlink(missing_ok=True)
    with serve(shop) as port:
        SHOT.shoot(browser, f"http://127.0.0.1:{port}/", out)
    assert png_size(out)[0] == 1400
    assert png_size(out)[1] > 1000
