"""Remove lane worktrees and merged lane branches; keep unmerged work unless forced.

Only orchestree's things are touched: worktrees named `agent-*` under the worktree
root, `lane-<id>` branches of lanes in the tracker, and the scratch worktrees of
killed merges. A worktree with uncommitted changes and a branch with commits that are
not in the base branch are kept and named, with what to do about them; `force`
removes them too, saying what it removes before it does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestree import git, worktree_guard
from orchestree.errors import GitError
from orchestree.layout import branch
from orchestree.runlock import run_lock

if TYPE_CHECKING:
    from orchestree.orchestrator import Repo


@dataclass
class CleanupReport:
    removed: list[str] = field(default_factory=list)  # worktrees removed
    pruned: list[str] = field(default_factory=list)  # worktrees deleted by hand, unregistered
    kept: list[str] = field(default_factory=list)  # worktrees kept, with the reason
    deleted: list[str] = field(default_factory=list)  # branches deleted
    kept_branches: list[str] = field(default_factory=list)  # unmerged branches, with hints
    kept_refs: list[str] = field(default_factory=list)  # commits found off a lane branch
    # Hears each line as it happens (one line per lane while cleanup runs), if set.
    tell: Callable[[str], None] | None = None

    def lines(self, told: bool = False) -> list[str]:
        """What was done, grouped; with `told`, only the closing advice (`tell` said
        the rest as it happened)."""
        out = [] if told else self._done()
        if self.kept or self.kept_branches:
            out.append("nothing unmerged or uncommitted was removed; `--force` removes it too")
        nothing = not (self.removed or self.pruned or self.deleted or self.kept)
        return out if out or not nothing or self.kept_branches else ["nothing to clean up"]

    def _done(self) -> list[str]:
        out = [f"removed worktree {p}" for p in self.removed]
        out += [f"pruned stale worktree entry {p} (its folder was gone)" for p in self.pruned]
        out += [f"deleted branch {b}" for b in self.deleted]
        out += [f"kept worktree {line}" for line in self.kept]
        out += [f"kept branch {line}" for line in self.kept_branches]
        out += self.kept_refs
        return out

    def add(self, where: list[str], item: str, line: str) -> None:
        where.append(item)
        if self.tell is not None:
            self.tell(line)


def cleanup(
    repo: Repo,
    force: bool = False,
    say: Callable[[str], None] = print,
    step: Callable[[str | None], None] | None = None,
    tell: Callable[[str], None] | None = None,
    resetting: bool = False,
) -> CleanupReport:
    """Remove worktrees and merged branches. `say` hears what `force` removes, first;
    `step` hears each step as it starts (a live line), `tell` each line as it happens.
    `resetting`: the tracker is about to be archived, so the advice for a kept branch
    is what works after the reset, not `orchestree merge --lane`."""
    with run_lock(repo.layout, "clean up"):
        return _cleanup(repo, force, say, step or (lambda _: None), tell, resetting)


def _keep_advice(lane_id: str, name: str, resetting: bool) -> str:
    if not resetting:
        return (
            f"merge it with `orchestree merge --lane {lane_id}` or delete it with "
            f"`git branch -D {name}`"
        )
    return (
        f"after the reset, `git merge --no-edit {name}` merges it as it is, `orchestree "
        f"add-lane {lane_id} '<lane JSON>'` takes the lane up again on it, `git branch -D "
        f"{name}` deletes it"
    )


def _cleanup(
    repo: Repo,
    force: bool,
    say: Callable[[str], None],
    step: Callable[[str | None], None],
    tell: Callable[[str], None] | None,
    resetting: bool = False,
) -> CleanupReport:
    from orchestree.verify import sweep_scratch

    root, layout = repo.root, repo.layout
    tracker = repo.store.read()
    report = CleanupReport(tell=tell)
    step("sweeping scratch worktrees")
    sweep_scratch(repo)
    busy: set[str] = set()  # branches still checked out in a kept worktree
    trees = [t for t in git.worktree_list(root)
             if t.path.parent == layout.worktrees and t.path.name.startswith("agent-")]  # fmt: skip
    for n, tree in enumerate(trees, 1):
        name = tree.path.name
        shown = layout.rel(tree.path)
        step(f"worktree {n}/{len(trees)}: {shown}")
        if tree.prunable and not os.path.lexists(tree.path):
            git.worktree_remove(root, tree.path)
            report.add(report.pruned, shown, f"pruned stale worktree entry {shown} (its folder "
                       "was gone)")  # fmt: skip
            continue
        lane_id = name.removeprefix("agent-")
        lane = tracker.lanes.get(lane_id)
        check = worktree_guard.verify(root, tree.path, branch(lane_id))
        if check.problem and check.admin is None:
            # Never act in (or delete through) a worktree that is no longer ours: not
            # even with --force. The person decides.
            why = f"{shown} ({check.problem}; check it, then remove it by hand)"
            report.add(report.kept, why, f"kept worktree {why}")
            busy.add(branch(lane_id))
            continue
        attempt = lane.attempts if lane is not None else 0
        ref = worktree_guard.keep_off_branch(root, check, lane_id, attempt, branch(lane_id))
        if ref:  # commits made off the lane branch outlive its worktree
            kept = f"kept commits of {shown} ({check.problem}) at {ref}"
            report.add(report.kept_refs, kept, kept)
        dirty = git.dirty_files(tree.path)
        reason = ""
        if lane is not None and lane.status == "running":
            reason = "its lane is running"
        elif dirty:
            listed = ", ".join(dirty[:10]) + (" ..." if len(dirty) > 10 else "")
            reason = f"uncommitted changes: {listed}"
        if reason and not force:
            report.add(report.kept, f"{shown} ({reason})", f"kept worktree {shown} ({reason})")
            busy.add(tree.branch or "")
            continue
        if reason:
            say(f"removing worktree {shown} despite {reason} (--force)")
        try:
            git.worktree_remove(root, tree.path, force=bool(reason))
        except GitError as exc:
            why = f"{shown} (git refused: {exc.stderr.strip().splitlines()[-1]})"
            report.add(report.kept, why, f"kept worktree {why}")
            busy.add(tree.branch or "")
            continue
        report.add(report.removed, shown, f"removed worktree {shown}")
    base_head = git.head_commit(root, f"refs/heads/{tracker.base_branch}")
    for lane_id, lane in sorted(tracker.lanes.items()):
        name = branch(lane_id)
        head = git.head_commit(root, f"refs/heads/{name}")
        if head is None:
            continue
        step(f"branch {name}")
        if name in busy:
            why = f"{name} (checked out in a kept worktree)"
            report.add(report.kept_branches, why, f"kept branch {why}")
            continue
        merged = base_head is not None and git.is_ancestor(root, head, base_head)
        if not merged and not force:
            why = (
                f"{name} ({lane.status}, at {head[:10]}, not in {tracker.base_branch}): "
                + _keep_advice(lane_id, name, resetting)
            )
            report.add(report.kept_branches, why, f"kept branch {why}")
            continue
        if not merged:
            say(
                f"deleting unmerged branch {name} at {head[:10]} (--force); "
                f"`git branch {name} {head[:10]}` brings it back until git prunes it"
            )
        git.branch_delete(root, name, force=True)
        report.add(report.deleted, name, f"deleted branch {name}")
    step(None)
    return report
