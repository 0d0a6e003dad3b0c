"""Views of many lanes: `status` fits one screen (counts, what needs a look first, the
rest folded), `--all` lists everything, `add-lane --from` counts what it added."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lanes_helpers import add_lanes, make_repo, set_status
from orchestree.cli import main

LANES = 60


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LINES", "30")
    monkeypatch.setenv("COLUMNS", "120")
    root = make_repo(tmp_path / "repo")
    add_lanes(root, {f"l{n:02d}": {} for n in range(LANES)})
    set_status(root, "l50", "running")
    set_status(root, "l55", "running", "failed")
    set_status(root, "l57", "blocked")
    for n in range(20):
        set_status(root, f"l{n:02d}", "running", "completed")
    return root


def test_status_of_many_lanes_fits_one_screen_with_what_needs_a_look_first(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_cli(capsys, "status", "--repo", str(repo))

    assert code == 0, out
    lines = out.splitlines()
    assert len(lines) <= 30, out
    assert "60 lanes: 1 running, 1 failed, 1 blocked, 37 pending, 20 completed" in out
    rows = [w[0] for w in (line.split() for line in lines) if w and re.fullmatch(r"l\d\d", w[0])]
    assert rows[:3] == ["l50", "l55", "l57"]  # running, failing, stuck: first
    assert f"… and {LANES - len(rows)} more lanes (" in out
    assert "`orchestree status --all` lists every lane" in out


def test_status_all_lists_every_lane(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "status", "--all", "--repo", str(repo))

    assert code == 0, out
    for n in range(LANES):
        assert f"l{n:02d} " in out
    assert "more lanes" not in out


def test_status_of_a_few_lanes_is_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINES", "30")
    root = make_repo(tmp_path / "repo")
    add_lanes(root, {"a": {}, "b": {}})
    code, out = run_cli(capsys, "status", "--repo", str(root))
    assert code == 0
    assert "lanes:" not in out
    assert "more lanes" not in out
    starts = {line.split()[0] for line in out.splitlines() if line.split()}
    assert {"a", "b"} <= starts


def test_add_lane_from_counts_and_names_the_first_few(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_repo(tmp_path / "repo")
    spec = tmp_path / "lanes.json"
    spec.write_text(json.dumps({f"x{n:03d}": {"tasks": ["t"]} for n in range(300)}))

    code, out = run_cli(capsys, "add-lane", "--from", str(spec), "--repo", str(root))

    assert code == 0, out
    assert out == (
        "added 300 lane(s): x000, x001, x002, x003, x004, x005, x006, x007 and 292 more\n"
    )


def test_monitor_once_of_many_lanes_fits_one_screen_and_all_shows_every_lane(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_cli(capsys, "monitor", "--once", "--repo", str(repo))

    assert code == 0, out
    lines = out.splitlines()
    assert len(lines) <= 30, out
    assert "l50" in out
    assert "l55" in out
    assert "more lanes" in out
    assert "`orchestree monitor --once --all` shows every row" in out

    code, out = run_cli(capsys, "monitor", "--once", "--all", "--repo", str(repo))
    assert code == 0, out
    for n in range(LANES):
        assert f"l{n:02d}" in out
    assert "more lanes" not in out
    assert "--all" not in out
