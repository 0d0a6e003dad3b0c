"""report.py: what the CLI shows from a tracker. The status table and its folding, a
run's summary (lanes that changed nothing are never called merged), the tally, the plan
as lines and the live progress line; agent text is always shown as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestree import report, statusview
from orchestree.layout import Layout
from orchestree.models import Agent, Lane, LaneInput, LaneMerge, Plan, Tracker

HEAD = "0123456789abcdef0123456789abcdef01234567"


def make_tracker(lanes: dict[str, dict[str, Any]], **top: Any) -> Tracker:
    """A tracker whose lanes keep the order they are given in."""
    return Tracker(
        repo="/srv/demo",
        base_branch="main",
        base_commit=HEAD,
        lanes={k: Lane(order=i, **fields) for i, (k, fields) in enumerate(lanes.items())},
        **top,
    )


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 160x50 console, whatever terminal runs the tests."""
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("LINES", "50")


def status_text(tracker: Tracker, capsys: pytest.CaptureFixture[str], **kw: Any) -> str:
    """The status screen of `tracker` as written to tracker.json (statusview.py)."""
    capsys.readouterr()
    statusview.render(tracker.model_dump(mode="json"), "/srv/demo", **kw)
    return capsys.readouterr().out


# --- outcome and tally ---------------------------------------------------------------


def test_a_lane_that_changed_nothing_is_counted_as_such_not_as_merged() -> None:
    assert report.outcome(Lane(status="merged", no_changes=True)) == "changed nothing"
    assert report.outcome(Lane(status="completed", no_changes=True)) == "changed nothing"
    assert report.outcome(Lane(status="merged")) == "merged"
    assert report.outcome(Lane(status="failed", no_changes=True)) == "failed"


def test_tally_counts_outcomes_in_a_fixed_order_and_names_those_asked_for() -> None:
    said = report.tally(["failed", "merged", "verify_failed", "merged", "odd"])
    assert said == "5 lanes: 2 merged, 1 verify failed, 1 failed, 1 odd"
    assert report.tally([], always=("merged",)) == "0 lanes: 0 merged"
    assert report.tally([]) == "0 lanes: none"
    assert report.tally(["completed"], "probe") == "1 probe: 1 completed"


# --- the summary of a run ----------------------------------------------------------------


def test_summary_lines_say_each_lanes_outcome_with_why_and_where_to_look() -> None:
    tracker = make_tracker({
        "ok": {"status": "merged", "attempts": 2},
        "idle": {"status": "merged", "no_changes": True},
        "clash": {"status": "conflict", "merge": LaneMerge(conflicts=["a.py", "b.py"])},
        "bad": {"status": "failed", "error": "exited with code 1: boom"},
        "late": {"status": "verify_failed", "error": "verify `make` exited 2:\ntail"},
        "held": {"status": "blocked", "error": "dependency bad failed"},
        "stop": {"status": "cancelled", "error": "its agent was stopped"},
        "skip": {"status": "completed", "merge": LaneMerge(status="skipped"), "error": "why"},
        "wait": {"status": "pending"},
        "scan": {"status": "completed", "kind": "probe"},
    })  # fmt: skip
    lines = report.summary_lines(tracker, Layout(Path("/srv/demo")))
    assert lines == [
        "summary: 9 lanes: 1 merged, 1 changed nothing, 1 completed, 1 conflict, "
        "1 verify failed, 1 failed, 1 blocked, 1 cancelled, 1 pending; 1 probe: 1 completed",
        "  ✓ ok: merged after 2 attempts",
        "  · idle: changed nothing",
        "  ✗ clash: conflict in a.py, b.py (its branch is kept)",
        "  ✗ bad: failed: exited with code 1: boom (log: .orchestration/logs/agent-bad.log)",
        "  ✗ late: verify_failed: verify `make` exited 2:\ntail "
        "(log: .orchestration/logs/agent-late.log)",
        "  ✗ held: blocked: dependency bad failed",
        "  ✗ stop: cancelled: its agent was stopped",
        "  - skip: not merged: why",
        "  · wait: pending",
        "  · probe scan: completed",
    ]


def test_a_summary_of_only_probes_counts_probes_and_of_nothing_says_so() -> None:
    layout = Layout(Path("/srv/demo"))
    probes = make_tracker({"p": {"status": "failed", "kind": "probe", "error": "e"}})
    assert report.summary_lines(probes, layout)[0] == "summary: 1 probe: 1 failed"
    assert report.summary_lines(make_tracker({}), layout) == ["summary: 0 lanes: 0 merged"]


def test_render_summary_prints_the_summary_lines(capsys: pytest.CaptureFixture[str]) -> None:
    tracker = make_tracker({"a": {"status": "merged"}})
    report.render_summary(tracker, Layout(Path("/srv/demo")))
    assert capsys.readouterr().out == "summary: 1 lane: 1 merged\n  ✓ a: merged\n"


def test_the_summary_shows_an_agents_control_characters_as_escapes() -> None:
    tracker = make_tracker({"bad": {"status": "failed", "error": "\x1b[31mred\x07 end"}})
    line = report.summary_lines(tracker, Layout(Path("/srv/demo")))[1]
    assert "\x1b" not in line
    assert "\x07" not in line
    assert "red" in line


# --- the status table --------------------------------------------------------------------


def test_status_shows_the_phase_base_and_one_row_a_lane(
    wide: None, capsys: pytest.CaptureFixture[str]
) -> None:
    tracker = make_tracker(
        {
            "api": {"status": "running", "attempts": 1, "max_attempts": 3, "progress": "tests"},
            "db": {"status": "completed", "depends_on": ["api"], "agent": "codex"},
            "docs": {"status": "merged", "no_changes": True},
        },
        phase=3,
        status="running",
    )
    out = status_text(tracker, capsys, default_agent="claude")
    head, *rest = out.splitlines()
    assert head == f"/srv/demo  phase 3 (execute), running; base main @ {HEAD[:10]}"
    row = {line.split()[0]: line.split() for line in rest if line.strip()}
    assert row["api"][:5] == ["api", "running", "medium", "claude", "1/3"]
    assert row["api"][-1] == "tests"
    assert row["db"][:6] == ["db", "completed", "medium", "codex", "0", "api"]
    assert "changed nothing" in " ".join(row["docs"])


def test_status_without_lanes_says_how_to_add_one(capsys: pytest.CaptureFixture[str]) -> None:
    out = status_text(make_tracker({}), capsys)
    assert out.splitlines()[1] == "no lanes yet: add one with `orchestree add-lane <id> '<json>'`"


def test_lanes_held_for_one_agents_login_share_one_reason_said_once(
    wide: None, capsys: pytest.CaptureFixture[str]
) -> None:
    why = "agent 'claude' is not logged in (401); run `claude login`"
    tracker = make_tracker({
        "a": {"status": "failed", "error": "401 unauthorized"},
        "b": {"status": "blocked", "error": why, "held": "claude"},
        "c": {"status": "blocked", "error": why, "held": "claude"},
        "d": {"status": "blocked", "error": "dependency a failed"},
    })  # fmt: skip
    out = status_text(tracker, capsys)
    assert out.count("run `claude login`") == 1
    assert f"b, c held: {why}" in out
    assert out.count("held: its agent is not logged in (see below)") == 2
    assert "dependency a failed" in out


def test_agent_text_in_status_is_text_not_markup_or_control_characters(
    wide: None, capsys: pytest.CaptureFixture[str]
) -> None:
    tracker = make_tracker({"x": {"status": "running", "progress": "[bold red]hi[/] \x1b[2J"}})
    out = status_text(tracker, capsys)
    assert "[bold red]hi[/]" in out
    assert "\x1b" not in out


def test_status_adds_host_and_cost_columns_only_when_lanes_have_them(
    wide: None, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = status_text(make_tracker({"a": {"status": "pending"}}), capsys)
    assert "host" not in plain
    assert "cost" not in plain
    tracker = make_tracker({
        "a": {"status": "completed", "host": "worker-1", "cost_usd": 0.25},
        "b": {"status": "completed", "cost_usd": 0.5},
    })  # fmt: skip
    out = status_text(tracker, capsys)
    header = next(line for line in out.splitlines() if line.startswith("lane"))
    assert header.split()[-2:] == ["host", "cost"]
    assert "worker-1" in out
    assert "$0.2500" in out
    assert "cost: $0.7500 over 2 lane(s)" in out


def test_a_narrow_console_shows_one_line_a_lane_with_its_text_wrapped_below(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    monkeypatch.setenv("LINES", "50")
    words = " ".join(f"word{i}" for i in range(30))
    out = status_text(make_tracker({"lane-with-a-long-id": {"progress": words}}), capsys)
    lines = out.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("lane ")))
    assert lines[at].split() == ["lane", "status", "prio", "agent", "tries"]
    assert lines[at + 1].split() == ["lane-with-a-long-id", "pending", "medium", "-", "0"]
    wrapped = [line for line in lines[at + 2 :] if line.startswith("    ")]
    assert len(wrapped) > 1
    assert all(len(line) <= 50 for line in lines)
    assert " ".join(" ".join(line.split()) for line in wrapped) == words


def test_more_lanes_than_the_screen_are_folded_with_counts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("LINES", "24")
    lanes = {f"l{i:03}": {"status": "merged"} for i in range(60)}
    lanes["l007"] = {"status": "failed", "error": "boom"}
    agents = {f"agent-l{i:03}": Agent(worktree="w", lane=f"l{i:03}", branch="b") for i in range(3)}
    tracker = make_tracker(lanes, agents=agents)
    out = status_text(tracker, capsys)
    assert "60 lanes: " in out
    assert "l007" in out  # a lane that needs a look is shown first
    shown = [line for line in out.splitlines() if line.startswith("l0")]
    assert len(shown) <= 24
    assert "`orchestree status --all` lists every lane" in out
    assert "agents: 3 created" in out
    everything = status_text(tracker, capsys, show_all=True)
    assert len([line for line in everything.splitlines() if line.startswith("l0")]) == 60


# --- the plan and the live lines ----------------------------------------------------------


def test_plan_lines_name_each_lane_its_priority_and_what_it_waits_for() -> None:
    plan = Plan(
        lanes={
            "api": LaneInput(name="Build the API", priority="high"),
            "db": LaneInput(name="Schema", priority="low"),
            "ui": LaneInput(name="The \x1b[31mUI", depends_on=["api", "db"]),
        }
    )
    lines = report.plan_lines(plan)
    assert lines[0] == "  api [high]: Build the API"
    assert lines[1] == "  db [low]: Schema"
    assert lines[2].startswith("  ui [medium] (after api, db): The ")
    assert "\x1b" not in lines[2]


def test_plain_prints_a_line_at_once_keeping_newlines_and_tabs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report.plain("✓ a: completed\n\tdetail\x07")
    out = capsys.readouterr().out
    assert out.startswith("✓ a: completed\n\tdetail")
    assert "\x07" not in out


def test_the_live_line_counts_finished_lanes_and_names_the_running_ones() -> None:
    tracker = make_tracker({
        "a": {"status": "merged"},
        "b": {"status": "running", "started_at": "2020-01-01T00:00:00.000Z"},
        "c": {"status": "pending"},
        "p": {"status": "completed", "kind": "probe"},
    })  # fmt: skip
    live = report.LiveProgress(lambda: tracker)
    line = live.live.get_renderable().plain  # type: ignore[union-attr]
    assert line.startswith("1/3 lanes done · running: b ")
    live.step("verifying docs")
    assert live.live.get_renderable().plain.startswith("merge: verifying docs · ")  # type: ignore[union-attr]


def test_the_live_line_survives_a_tracker_it_cannot_read() -> None:
    def unreadable() -> Tracker:
        raise OSError("torn")

    live = report.LiveProgress(unreadable)
    assert live.live.get_renderable().plain == "…"  # type: ignore[union-attr]


def test_a_long_word_in_a_narrow_progress_column_starts_its_own_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An escape shown as text (`\\x1b[2J`) stays whole when its word must be cut."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "50")
    lanes = {
        "commits-orch-paths": {"status": "completed", "agent": "chaos"},
        "markup": {"status": "completed", "progress": "[b]click[/b] \x1b[2J\x1b]0;owned\x07 x"},
    }
    out = status_text(make_tracker(lanes), capsys)
    assert "\\x1b[2J" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert any(line.rstrip().endswith("[b]click[/b]") for line in out.splitlines())
