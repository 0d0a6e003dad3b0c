"""`cleanup` of many lanes at once (folders deleted in parallel, entries unregistered
together, branches in one transaction) keeps every rule of the one-by-one cleanup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lanes_helpers import add_lanes, finish_lane, make_repo, sh, write
from orchestree import git
from orchestree.cli import main
from orchestree.repo import open_repo

MERGED = 12


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo")
    ids = [f"m{n:02d}" for n in range(MERGED)]
    add_lanes(root, {lane: {} for lane in [*ids, "open", "dirty", "detached", "moved"]})
    for lane in [*ids, "dirty", "detached", "moved"]:
        finish_lane(root, lane, {f"{lane}.txt": f"{lane}\n"})
    finish_lane(root, "open", {"open.txt": "o\n"})
    for lane in [*ids, "dirty", "detached", "moved"]:
        assert main(["merge", "--lane", lane, "--repo", str(root)]) == 0
    layout = open_repo(root).layout
    write(layout.worktree("dirty"), {"scratch.txt": "not committed\n"})
    # An agent left its branch: a detached HEAD with a commit of its own.
    detached = layout.worktree("detached")
    sh(detached, "checkout", "-q", "--detach")
    write(detached, {"extra.txt": "off the branch\n"})
    sh(detached, "add", "extra.txt")
    sh(detached, "commit", "-q", "-m", "off branch")
    # An agent replaced its worktree with a symlink to somewhere else.
    moved = layout.worktree("moved")
    os.rename(moved, root.parent / "elsewhere")
    os.symlink(root.parent / "elsewhere", moved)
    return root


def test_many_merged_lanes_go_and_every_kept_thing_stays(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["cleanup", "--repo", str(repo)])
    out = capsys.readouterr()
    text = out.out + out.err

    assert code == 0, text
    trees = {t.path.name for t in git.worktree_list(repo)} - {repo.name}
    assert trees == {"agent-dirty", "agent-moved"}  # a clean worktree goes, its branch stays
    for n in range(MERGED):
        assert f"removed worktree .worktrees/agent-m{n:02d}" in text
        assert not git.branch_exists(repo, f"lane-m{n:02d}")
        assert not (repo / ".worktrees" / f"agent-m{n:02d}").exists()
    assert "kept worktree .worktrees/agent-dirty (uncommitted changes: scratch.txt)" in text
    assert "kept branch lane-open (completed" in text
    assert git.branch_exists(repo, "lane-open")
    assert git.branch_exists(repo, "lane-dirty")  # checked out in a kept worktree
    assert git.branch_exists(repo, "lane-moved")
    assert "kept worktree .worktrees/agent-moved (the agent replaced its worktree" in text
    assert (repo.parent / "elsewhere" / "moved.txt").exists()  # never deleted through
    kept = sh(repo, "for-each-ref", "--format=%(refname)", "refs/orchestree/attempts/")
    assert "refs/orchestree/attempts/detached/" in kept
    assert "kept commits of .worktrees/agent-detached" in text
    assert sh(repo, "worktree", "prune", "--dry-run", "-v") == ""  # nothing left stale
    assert sh(repo, "status", "--porcelain") == ""


def test_a_second_cleanup_finds_only_what_was_kept(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cleanup", "--repo", str(repo)]) == 0
    capsys.readouterr()
    assert main(["cleanup", "--repo", str(repo)]) == 0
    text = capsys.readouterr().out
    assert "removed worktree" not in text
    assert "kept worktree .worktrees/agent-dirty" in text
