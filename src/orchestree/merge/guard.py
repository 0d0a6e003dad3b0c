"""What a merge must never do with a lane's work, whatever the agent committed.

Two checks the merge makes before it moves the base branch (DESIGN.md §16):
- a lane whose tree holds orchestree's own paths (`.orchestration`, the worktree
  root, a helper copy the base does not track) is held, with those paths named:
  merged, they would replace the tracker, the logs or other lanes' worktrees;
- a fast-forward that would write over a file that is untracked or ignored in the
  base worktree (the user's `.env`) is refused, naming the files and the lanes.
git itself refuses to overwrite an untracked file but overwrites an ignored one
silently, so the check is made here, for both.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Container
from pathlib import Path

from orchestree import git
from orchestree.layout import Layout, branch
from orchestree.models import Lane
from orchestree.worktree_guard import ORCH_PATHS

SHOWN = 5  # paths named in one line; the rest are counted


def _listed(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(paths[:SHOWN]) + more


def own_paths(layout: Layout, base: str) -> list[str]:
    """orchestree's paths a lane's tree may not hold (the helper only when the base
    does not track a file of that name itself)."""
    paths = [*ORCH_PATHS, layout.rel(layout.worktrees).strip("/")]
    if not git.tracked_under(layout.root, base, ["access_tracker.py"]):
        paths.append("access_tracker.py")
    return paths


def own_paths_problem(
    root: Path, lane_id: str, head: str, paths: list[str], clean: Container[str] = ()
) -> str | None:
    """Why the lane's head cannot be merged: it holds orchestree's own paths. `clean`:
    heads known to hold none (`git.revs_holding` asked for many at once)."""
    if head in clean:
        return None
    found = git.tracked_under(root, head, paths)
    if not found:
        return None
    return (
        f"its branch holds orchestree's own paths ({_listed(found)}); remove them "
        f"from {branch(lane_id)}, then merge again"
    )


def _occupied(worktree: Path, rel: str) -> bool:
    """Would writing `rel` in `worktree` replace something there: the file itself, or
    a file or symlink where one of its folders should be?"""
    parts = Path(rel).parts
    for depth in range(1, len(parts) + 1):
        try:
            mode = os.lstat(worktree.joinpath(*parts[:depth])).st_mode
        except FileNotFoundError:
            return False
        if depth == len(parts) or not stat.S_ISDIR(mode):
            return True
    return False


def would_overwrite(
    root: Path, worktree: Path, old: str, chain: list[tuple[str, str]]
) -> dict[str, str]:
    """Lanes whose merge would write over an untracked or ignored file of `worktree`
    (where the base branch is checked out): lane -> why, naming the files.

    `chain` is the merges made on top of `old`, in order: (lane, merge commit)."""
    if not chain:
        return {}
    added = git.added_files(root, old, chain[-1][1])
    taken = {f for f in added if _occupied(worktree, f)}
    held: dict[str, str] = {}
    previous = old
    for lane_id, commit in chain:
        if taken:
            mine = sorted(taken & set(git.changed_files(root, previous, commit)))
            if mine:
                them = "it" if len(mine) == 1 else "them"
                held[lane_id] = (
                    f"it would overwrite {_listed(mine)} in {worktree}, untracked or "
                    f"ignored there; move {them} away (or drop {them} from "
                    f"{branch(lane_id)}), then merge again"
                )
                taken -= set(mine)
        previous = commit
    return held


def head_problem(where: Path, lane: Lane, head: str) -> tuple[str, list[str]] | None:
    """Why a reworked lane's head must not be merged: it still holds conflict markers,
    or it does not contain the base it was asked to merge. (why, files) or None."""
    rework = lane.rework
    if rework is None or rework.reason != "conflict":
        return None
    n = rework.count
    if rework.base and not git.is_ancestor(where, rework.base, head):
        short = rework.base[:10]
        return (f"rework {n} failed: the lane does not contain the merge of {short}",
                list(rework.files))  # fmt: skip
    # Only the files that held markers: a file may hold such lines on purpose.
    marked = git.files_with_markers(where, head, rework.files) if rework.files else []
    if marked:
        return f"rework {n} failed: it left conflict markers in {', '.join(marked)}", marked
    return None
