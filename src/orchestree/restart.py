"""Starting a lane over from the current base (issue 21, item 3).

`retry` of a conflicted or stale lane, and `add-lane --replace` of a merged one, must
not rebuild the lane on its old start point: that reproduces the same conflict. They
retire the lane's branch instead: its head is kept under
`refs/orchestree/attempts/<lane>/<n>` (DESIGN.md §13), its worktree is removed, and
the next attempt starts from the base branch as it is now, with its dependencies.

Each step is safe to interrupt: the head is kept before the branch goes, and a branch
or worktree already gone is simply not there to remove on the next try.
"""

from __future__ import annotations

from orchestree import git
from orchestree.errors import UserError
from orchestree.layout import KEPT, branch
from orchestree.models import Lane, Tracker
from orchestree.repo import Repo


def is_stale(repo: Repo, tracker: Tracker, lane: Lane) -> bool:
    """True when the base branch has moved past the lane's start point."""
    base = git.head_commit(repo.root, f"refs/heads/{tracker.base_branch}")
    if base is None or lane.start_commit is None:
        return False
    return not git.is_ancestor(repo.root, base, lane.start_commit)


def wants_fresh_start(repo: Repo, tracker: Tracker, lane: Lane) -> bool:
    """A conflicted lane, or one whose start point the base branch has left behind."""
    return lane.status == "conflict" or is_stale(repo, tracker, lane)


def retire_branch(repo: Repo, lane_id: str, lane: Lane, how: str) -> str | None:
    """Keep the lane's branch head under the attempts ref, then remove its worktree and
    branch; returns the ref, or None when there was no branch. `how` tells the user
    the other way out when the worktree holds uncommitted work."""
    from orchestree.executors.launch import ownership_problem

    root, name, path = repo.root, branch(lane_id), repo.layout.worktree(lane_id)
    problem = ownership_problem(repo, lane_id, lane)
    if problem:
        raise UserError(f"lane {lane_id!r}: {problem}")
    if path.exists():
        dirty = git.dirty_files(path)
        if dirty:
            listed = ", ".join(dirty[:5]) + (" …" if len(dirty) > 5 else "")
            raise UserError(
                f"lane {lane_id!r}: its worktree {repo.layout.rel(path)} has uncommitted "
                f"changes ({listed}); commit or discard them first, or {how}"
            )
    head = git.head_commit(root, f"refs/heads/{name}")
    kept = None
    if head is not None:
        kept = git.keep_attempt_head(root, lane_id, max(lane.attempts, 1), head)
    if path.exists():
        git.worktree_remove(root, path, force=True)
    git.worktree_prune(root)
    if head is not None:
        git.branch_delete(root, name, force=True)
    return kept


def forget_start(lane: Lane) -> None:
    """The lane's next attempt computes its start point afresh (and is no rework)."""
    lane.rework = None
    lane.start_commit = None
    lane.head_commit = None
    lane.changed_files = []
    lane.no_changes = False


# --- Taking up a lane again after `reset` (issue 21, item 11) -------------------------


def mark_kept_branches(repo: Repo, tracker: Tracker) -> list[str]:
    """Before a reset archives the tracker: remember where each lane branch started,
    so `add-lane` of that id can tell the branch is orchestree's and adopt it."""
    marked = []
    for lane_id, lane in tracker.lanes.items():
        head = git.head_commit(repo.root, f"refs/heads/{branch(lane_id)}")
        if head is not None and lane.start_commit is not None:
            git.set_ref(repo.root, KEPT + lane_id, lane.start_commit)
            marked.append(lane_id)
    return marked


def forget_gone_branches(repo: Repo, lane_ids: list[str]) -> None:
    """After the reset's cleanup: a branch it deleted has nothing left to adopt."""
    for lane_id in lane_ids:
        if git.head_commit(repo.root, f"refs/heads/{branch(lane_id)}") is None:
            git.delete_ref(repo.root, KEPT + lane_id)


def adoptable_start(repo: Repo, lane_id: str) -> str | None:
    """The start point of `lane-<id>` when a reset kept it for adoption and it still
    holds that start (so its commits are orchestree's lane work), else None."""
    start = git.head_commit(repo.root, KEPT + lane_id)
    head = git.head_commit(repo.root, f"refs/heads/{branch(lane_id)}")
    if start is None or head is None or not git.is_ancestor(repo.root, start, head):
        return None
    return start
