"""Build real repositories with finished lanes, without running any agent.

Tests of merge and cleanup need lanes that have done their work: `make_repo` makes a
repository with one commit and an initialised tracker, `finish_lane` commits files on
`lane-<id>` (in a worktree under `.worktrees/`, as the runner would, or on a bare branch)
and walks the lane pending -> running -> completed through the tracker store.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestree import git, lane_ops
from orchestree.layout import branch
from orchestree.models import Tracker
from orchestree.repo import init_repo, open_repo

IDENTITY = {
    "GIT_AUTHOR_NAME": "Orchestree Test",
    "GIT_AUTHOR_EMAIL": "test@orchestree.invalid",
    "GIT_COMMITTER_NAME": "Orchestree Test",
    "GIT_COMMITTER_EMAIL": "test@orchestree.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def set_identity() -> None:
    """A fixed git identity for every git this process and its children run."""
    os.environ.update(IDENTITY)


def sh(cwd: Path, *args: str) -> str:
    """Run git in `cwd` (test side: plain subprocess, fixed identity); its stdout."""
    env = {**os.environ, **IDENTITY}
    proc = subprocess.run(
        ("git", *args), cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def make_repo(path: Path, files: Mapping[str, str] | None = None, toml: str = "") -> Path:
    """A repository on `main` with one commit of `files`, initialised for orchestree."""
    set_identity()
    path.mkdir(parents=True, exist_ok=True)
    sh(path, "init", "-q", "-b", "main")
    write(path, files or {"README.md": "hello\n"})
    if toml:
        write(path, {"orchestree.toml": toml})
    sh(path, "add", "-A")
    sh(path, "commit", "-q", "-m", "base")
    init_repo(path)
    return path


def add_lanes(root: Path, lanes: Mapping[str, Mapping[str, Any]]) -> None:
    lane_ops.add_lanes(open_repo(root), {k: dict(v) for k, v in lanes.items()})


def commit_on_lane(
    root: Path,
    lane_id: str,
    files: Mapping[str, str],
    start: str = "main",
    worktree: bool = True,
    message: str = "",
) -> str:
    """Commit `files` on `lane-<id>` (created from `start` if new); returns the head."""
    repo = open_repo(root)
    name = branch(lane_id)
    path = repo.layout.worktree(lane_id)
    if worktree:
        if not path.exists():
            git.worktree_add(root, path, name, sh(root, "rev-parse", start))
        where = path
    else:
        if not git.branch_exists(root, name):
            sh(root, "branch", name, start)
        where = root.parent / f".scratch-{root.name}-{lane_id}"
        if not where.exists():
            sh(root, "worktree", "add", "-q", str(where), name)
    write(where, files)
    sh(where, "add", "-A")
    sh(where, "commit", "-q", "--allow-empty", "-m", message or f"work of {lane_id}")
    head = sh(where, "rev-parse", "HEAD")
    if not worktree:
        sh(root, "worktree", "remove", "--force", str(where))
    return head


def set_status(root: Path, lane_id: str, *statuses: str, head: str | None = None) -> None:
    """Walk a lane through `statuses` (one tracker write each, as the runner would)."""
    store = open_repo(root).store
    for status in statuses:

        def change(tracker: Tracker, status: str = status) -> None:
            lane = tracker.lanes[lane_id]
            lane.status = status  # type: ignore[assignment]
            if status == "completed":
                lane.head_commit = head

        store.update(change, "test-status", lane=lane_id, status=status)


def finish_lane(
    root: Path,
    lane_id: str,
    files: Mapping[str, str],
    start: str = "main",
    worktree: bool = True,
) -> str:
    """Commit `files` on the lane and mark it completed; returns its head commit."""
    head = commit_on_lane(root, lane_id, files, start=start, worktree=worktree)
    set_status(root, lane_id, "running", "completed", head=head)
    return head


def lane_status(root: Path, lane_id: str) -> str:
    return open_repo(root).store.read().lanes[lane_id].status


def is_clean(root: Path) -> bool:
    """No uncommitted change to a tracked file, no merge in progress."""
    return (
        not sh(root, "status", "--porcelain", "--untracked-files=no")
        and not (root / ".git" / "MERGE_HEAD").exists()
    )
