"""`orchestree cleanup` and `reset`: remove what is merged, keep what is not (unless --force)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lanes_helpers import add_lanes, finish_lane, make_repo, set_status, sh, write
from orchestree import git
from orchestree.cli import main
from orchestree.repo import open_repo


def run_cli(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str]:
    code = main([*args, "--repo", str(root)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def worktree_names(root: Path) -> set[str]:
    return {t.path.name for t in git.worktree_list(root)} - {root.name}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Lanes `done` (merged), `open` (completed, not merged), `dirty` (uncommitted work)."""
    root = make_repo(tmp_path / "repo")
    add_lanes(root, {"done": {}, "open": {}, "dirty": {}})
    finish_lane(root, "done", {"done.txt": "d\n"})
    finish_lane(root, "open", {"open.txt": "o\n"})
    finish_lane(root, "dirty", {"dirty.txt": "committed\n"})
    assert main(["merge", "--lane", "done", "--repo", str(root)]) == 0
    write(open_repo(root).layout.worktree("dirty"), {"dirty.txt": "not yet\n"})
    return root


def test_cleanup_keeps_unmerged_and_uncommitted_work(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_head = sh(repo, "rev-parse", "lane-open")
    dirty_tree = open_repo(repo).layout.worktree("dirty")

    code, out = run_cli(capsys, repo, "cleanup")

    assert code == 0
    assert worktree_names(repo) == {"agent-dirty"}
    assert (dirty_tree / "dirty.txt").read_text() == "not yet\n"
    assert "kept worktree .worktrees/agent-dirty (uncommitted changes: dirty.txt)" in out
    assert not git.branch_exists(repo, "lane-done")
    assert "deleted branch lane-done" in out
    assert sh(repo, "rev-parse", "lane-open") == open_head
    assert "orchestree merge --lane open" in out
    assert "git branch -D lane-open" in out
    assert git.branch_exists(repo, "lane-dirty")  # checked out in the kept worktree


def test_force_removes_everything_after_saying_so(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_head = sh(repo, "rev-parse", "lane-open")

    code, out = run_cli(capsys, repo, "cleanup", "--force")

    assert code == 0
    assert worktree_names(repo) == set()
    assert not any(git.branch_exists(repo, f"lane-{x}") for x in ("done", "open", "dirty"))
    lines = out.splitlines()
    said = lines.index(next(line for line in lines if "despite uncommitted changes" in line))
    assert said < lines.index("removed worktree .worktrees/agent-dirty")
    warned = next(line for line in lines if line.startswith("deleting unmerged branch lane-open"))
    assert open_head[:10] in warned
    assert lines.index(warned) < lines.index("deleted branch lane-open")


def test_worktree_deleted_by_hand_is_pruned(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(open_repo(repo).layout.worktree("open"))

    code, out = run_cli(capsys, repo, "cleanup")

    assert code == 0
    assert "pruned stale worktree entry .worktrees/agent-open" in out
    assert "agent-open" not in worktree_names(repo)
    assert git.branch_exists(repo, "lane-open")  # the branch still holds the work


def test_reset_keeps_unmerged_work_and_archives(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_head = sh(repo, "rev-parse", "lane-open")

    code, out = run_cli(capsys, repo, "reset", "--yes")

    assert code == 0
    assert sh(repo, "rev-parse", "lane-open") == open_head
    assert worktree_names(repo) == {"agent-dirty"}
    assert "kept branch lane-open" in out
    assert "tracker archived to" in out
    archived = list((repo / ".orchestration" / "archive").glob("*.json"))
    assert len(archived) == 1
    assert set(json.loads(archived[0].read_text())["lanes"]) == {"done", "open", "dirty"}
    assert open_repo(repo).store.read().lanes == {}


def test_reset_force_removes_them(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, repo, "reset", "--yes", "--force")
    assert code == 0
    assert worktree_names(repo) == set()
    assert not git.branch_exists(repo, "lane-open")
    assert "deleting unmerged branch lane-open" in out


def test_things_that_are_not_orchestrees_are_left_alone(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sh(repo, "branch", "lane-stranger")  # a lane-* branch with no lane in the tracker
    sh(repo, "branch", "feature")
    sh(repo, "worktree", "add", "-q", "--detach", str(repo / ".worktrees" / "mine"))
    elsewhere = tmp_path / "users-own"
    sh(repo, "worktree", "add", "-q", "--detach", str(elsewhere))
    shutil.rmtree(elsewhere)  # stale, but not ours to prune

    code, _ = run_cli(capsys, repo, "cleanup", "--force")

    assert code == 0
    assert git.branch_exists(repo, "lane-stranger")
    assert git.branch_exists(repo, "feature")
    names = worktree_names(repo)
    assert names == {"mine", "users-own"}


def test_running_lane_worktree_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path / "repo")
    add_lanes(root, {"busy": {}})
    finish_lane(root, "busy", {"b.txt": "b\n"})
    root_tracker = open_repo(root).store
    root_tracker.update(lambda t: setattr(t.lanes["busy"], "status", "merged"), "test")
    add_lanes(root, {"run": {}})
    git.worktree_add(root, open_repo(root).layout.worktree("run"), "lane-run", "main")
    set_status(root, "run", "running")

    code, out = run_cli(capsys, root, "cleanup")

    assert code == 0
    assert "agent-run (its lane is running)" in out
    assert "agent-run" in worktree_names(root)


def test_nothing_to_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_repo(tmp_path / "repo")
    code, out = run_cli(capsys, root, "cleanup")
    assert (code, out.strip()) == (0, "nothing to clean up")


def test_cleanup_refused_while_a_merge_holds_the_run_lock(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestree.runlock import run_lock

    with run_lock(open_repo(repo).layout, "merge"):
        code, out = run_cli(capsys, repo, "cleanup")
    assert code == 3
    assert "run.lock" in out
    assert "agent-open" in worktree_names(repo)
