"""Issue 21, item 3: `retry` of a conflicted lane starts it from the current base (the
old behaviour with --keep-base), and `add-lane --replace` runs a merged lane again.
Either way the earlier head stays under refs/orchestree/attempts/<lane>/<n>."""

from __future__ import annotations

from pathlib import Path

import pytest

from exec_helpers import add_lanes, cli, git, make_repo, statuses, tracker

# Two lanes write the same file: the second to merge conflicts with the first.
RIVALS = {
    "first": {"tasks": ["echo first > shared.txt"]},
    "second": {"tasks": ["echo second > shared.txt"]},
}


def _conflicted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    repo = make_repo(tmp_path, monkeypatch, files={"shared.txt": "base\n"})
    add_lanes(repo, RIVALS)
    assert cli(repo, "execute").code == 0
    assert cli(repo, "merge").code == 1
    assert statuses(repo) == {"first": "merged", "second": "conflict"}
    return repo, git(repo, "rev-parse", "lane-second")


def test_retry_of_a_conflicted_lane_starts_from_the_current_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, old_head = _conflicted(tmp_path, monkeypatch)
    main = git(repo, "rev-parse", "main")
    done = cli(repo, "retry", "second")
    assert done.code == 0, done.err
    assert "starts from the current base" in done.out
    assert "refs/orchestree/attempts/second/1" in done.out
    assert git(repo, "rev-parse", "refs/orchestree/attempts/second/1") == old_head
    lane = tracker(repo)["lanes"]["second"]
    assert lane["start_commit"] == main  # not its old start point behind main
    assert lane["status"] == "completed"
    merged = cli(repo, "merge")
    assert merged.code == 0, merged.out
    assert git(repo, "show", "main:shared.txt") == "second"
    assert statuses(repo) == {"first": "merged", "second": "merged"}


def test_retry_keep_base_reproduces_the_conflict_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, old_head = _conflicted(tmp_path, monkeypatch)
    start = tracker(repo)["lanes"]["second"]["start_commit"]
    done = cli(repo, "retry", "second", "--keep-base")
    assert done.code == 0, done.err
    assert "current base" not in done.out
    assert tracker(repo)["lanes"]["second"]["start_commit"] == start
    assert git(repo, "merge-base", "--is-ancestor", old_head, "lane-second") == ""
    assert cli(repo, "merge").code == 1
    assert statuses(repo)["second"] == "conflict"
    assert git(repo, "for-each-ref", "refs/orchestree/attempts/") == ""


def test_retry_with_uncommitted_work_in_the_worktree_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, old_head = _conflicted(tmp_path, monkeypatch)
    (repo / ".worktrees/agent-second/notes.txt").write_text("mine\n", encoding="utf-8")
    done = cli(repo, "retry", "second")
    assert done.code == 2
    assert "uncommitted changes (notes.txt)" in done.err
    assert "--keep-base" in done.err
    assert git(repo, "rev-parse", "lane-second") == old_head
    assert statuses(repo)["second"] == "conflict"


def test_a_merged_lane_can_be_replaced_and_runs_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"docs": {"tasks": ["echo v1 > docs.txt"]}})
    assert cli(repo, "execute").code == 0
    assert cli(repo, "merge").code == 0
    old_head = git(repo, "rev-parse", "lane-docs")
    (repo / "other.txt").write_text("moved on\n", encoding="utf-8")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-qm", "main moves on")
    # The message that suggested --replace, followed literally, now works.
    again = cli(repo, "add-lane", "docs", '{"tasks": ["echo v2 > docs.txt"]}')
    assert again.code == 2
    assert "use --replace" in again.err
    done = cli(repo, "add-lane", "--replace", "docs", '{"tasks": ["echo v2 > docs.txt"]}')
    assert done.code == 0, done.err
    assert git(repo, "rev-parse", "refs/orchestree/attempts/docs/1") == old_head
    lane = tracker(repo)["lanes"]["docs"]
    assert (lane["status"], lane["attempts"], lane["start_commit"]) == ("pending", 0, None)
    assert cli(repo, "execute").code == 0
    assert tracker(repo)["lanes"]["docs"]["start_commit"] == git(repo, "rev-parse", "main")
    assert cli(repo, "merge").code == 0
    assert git(repo, "show", "main:docs.txt") == "v2"
    assert git(repo, "show", "main:other.txt") == "moved on"


def test_replace_of_a_completed_lane_says_what_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"docs": {"tasks": ["echo v1 > docs.txt"]}})
    assert cli(repo, "execute").code == 0
    done = cli(repo, "add-lane", "--replace", "docs", '{"tasks": ["echo v2 > docs.txt"]}')
    assert done.code == 2
    assert "merge it first (`orchestree merge --lane docs`)" in done.err
    assert statuses(repo) == {"docs": "completed"}
    assert git(repo, "for-each-ref", "refs/orchestree/") == ""
