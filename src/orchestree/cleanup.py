"""Remove lane worktrees and merged lane branches; keep unmerged work unless forced.

Only orchestree's things are touched: worktrees named `agent-*` under the worktree
root, `lane-<id>` branches of lanes in the tracker, and the scratch worktrees of
killed merges, and `[worktree] share`'s templates no run would use any more (made
for another setup, folder list, lockfile or, without `share_key`, base commit). It
runs at raw git speed whatever the number of lanes: worktrees are
checked and their folders deleted in parallel, git prunes their entries once, and the
branches go in one `update-ref` transaction.

A worktree with uncommitted changes and a branch with commits that are
not in the base branch are kept and named, with what to do about them; `force`
removes them too, saying what it removes before it does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from orchestree import git, restart, worktree_guard, worktree_pool, worktree_share
from orchestree.layout import branch
from orchestree.models import Tracker
from orchestree.runlock import run_lock

if TYPE_CHECKING:
    from orchestree.repo import Repo


@dataclass
class CleanupReport:
    removed: list[str] = field(default_factory=list)  # worktrees removed
    pruned: list[str] = field(default_factory=list)  # worktrees deleted by hand, unregistered
    kept: list[str] = field(default_factory=list)  # worktrees kept, with the reason
    deleted: list[str] = field(default_factory=list)  # branches deleted
    kept_branches: list[str] = field(default_factory=list)  # unmerged branches, with hints
    kept_refs: list[str] = field(default_factory=list)  # commits found off a lane branch
    templates: list[str] = field(default_factory=list)  # stale share templates removed
    # Hears each line as it happens (one line per lane while cleanup runs), if set.
    tell: Callable[[str], None] | None = None

    def lines(self, told: bool = False) -> list[str]:
        """What was done, grouped; with `told`, only the closing advice (`tell` said
        the rest as it happened)."""
        out = [] if told else self._done()
        if self.kept or self.kept_branches:
            out.append("nothing unmerged or uncommitted was removed; `--force` removes it too")
        nothing = not (self.removed or self.pruned or self.deleted or self.kept or self.templates)
        return out if out or not nothing or self.kept_branches else ["nothing to clean up"]

    def _done(self) -> list[str]:
        out = [f"removed worktree {p}" for p in self.removed]
        out += [f"pruned stale worktree entry {p} (its folder was gone)" for p in self.pruned]
        out += [f"deleted branch {b}" for b in self.deleted]
        out += [f"kept worktree {line}" for line in self.kept]
        out += [f"kept branch {line}" for line in self.kept_branches]
        out += self.kept_refs
        out += [f"removed stale share template {line}" for line in self.templates]
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


@dataclass
class _Tree:
    """What cleanup found about one lane worktree (asked in parallel, decided in order)."""

    tree: git.Worktree
    shown: str
    check: worktree_guard.WorktreeCheck | None = None  # None: its folder is gone
    dirty: list[str] = field(default_factory=list)


def _workers() -> int:
    return max(4, 2 * (os.cpu_count() or 1))  # git waits on the disk as much as the CPU


def _inspect(repo: Repo, tree: git.Worktree, common: Path) -> _Tree:
    """The guard's check and the uncommitted files of one worktree (git runs, no change)."""
    shown = repo.layout.rel(tree.path)
    if tree.prunable and not os.path.lexists(tree.path):
        return _Tree(tree, shown)
    lane_id = tree.path.name.removeprefix("agent-")
    check = worktree_guard.verify(repo.root, tree.path, branch(lane_id), common)
    if check.problem and check.admin is None:
        return _Tree(tree, shown, check)
    return _Tree(tree, shown, check, git.dirty_files(tree.path))


def _remove_folder(path: Path) -> str | None:
    """Delete a worktree's folder (its `.git` link with it); why not, or None."""
    try:
        shutil.rmtree(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _cleanup(
    repo: Repo,
    force: bool,
    say: Callable[[str], None],
    step: Callable[[str | None], None],
    tell: Callable[[str], None] | None,
    resetting: bool = False,
) -> CleanupReport:
    from orchestree.merge.verify import sweep_scratch

    root, layout = repo.root, repo.layout
    tracker = repo.store.read()
    report = CleanupReport(tell=tell)
    step("sweeping scratch worktrees")
    sweep_scratch(repo)
    for name in worktree_pool.sweep(root, layout.worktrees):  # spares of `[worktree] pool`
        shown = layout.rel(worktree_pool.folder_of(layout.worktrees) / name)
        report.add(report.removed, shown, f"removed spare worktree {shown}")
    _sweep_templates(repo, tracker, report)
    every = git.worktree_list(root)
    trees = [t for t in every
             if t.path.parent == layout.worktrees and t.path.name.startswith("agent-")]  # fmt: skip
    # Branches checked out anywhere but in a worktree removed below stay (update-ref,
    # unlike `git branch -d`, would delete them under a checkout).
    busy = {t.branch for t in every if t.branch and t not in trees}
    step(f"checking {len(trees)} worktrees")
    common = git.common_dir(root)
    with ThreadPoolExecutor(_workers()) as pool:
        found = list(pool.map(lambda t: _inspect(repo, t, common), trees))
    doomed = _decide(repo, tracker, found, force, say, step, report, busy)
    _remove(repo, doomed, step, report, busy)
    _delete_branches(repo, tracker, force, say, step, report, busy, resetting)
    step(None)
    return report


def _sweep_templates(repo: Repo, tracker: Tracker, report: CleanupReport) -> None:
    """Remove the share templates (and their copies made ahead) but the one the next
    run uses: the current config's key on the base branch's head. None while a lane
    runs: its supervisor (which a killed `execute` leaves running, outside the run
    lock) may be taking a copy from any of them."""
    home = repo.layout.orch / "share"
    if not home.is_dir() or any(lane.status == "running" for lane in tracker.lanes.values()):
        return
    keep = set()
    config = repo.config.worktree
    head = git.head_commit(repo.root, f"refs/heads/{tracker.base_branch}")
    if config.setup and config.share and head is not None:
        folders = list(config.share)
        keep.add(worktree_share.key_at(repo.root, head, config.setup, folders, config.share_key))
    for name, copies in worktree_share.sweep(home, keep):
        shown = repo.layout.rel(home / name)
        ahead = "its copy" if copies == 1 else f"its {copies} copies"
        line = f"{shown} and {ahead} made ahead" if copies else shown
        report.add(report.templates, line, f"removed stale share template {line}")


def _decide(
    repo: Repo,
    tracker: Tracker,
    found: list[_Tree],
    force: bool,
    say: Callable[[str], None],
    step: Callable[[str | None], None],
    report: CleanupReport,
    busy: set[str],
) -> list[_Tree]:
    """Which worktrees go: the same rules as ever, said in order; the ones to remove."""
    doomed: list[_Tree] = []
    for n, item in enumerate(found, 1):
        tree, shown, check = item.tree, item.shown, item.check
        step(f"worktree {n}/{len(found)}: {shown}")
        lane_id = tree.path.name.removeprefix("agent-")
        if check is None:
            doomed.append(item)  # its folder is gone: the prune unregisters it
            continue
        if check.problem and check.admin is None:
            # Never act in (or delete through) a worktree that is no longer ours: not
            # even with --force. The person decides.
            why = f"{shown} ({check.problem}; check it, then remove it by hand)"
            report.add(report.kept, why, f"kept worktree {why}")
            busy.add(branch(lane_id))
            continue
        lane = tracker.lanes.get(lane_id)
        attempt = lane.attempts if lane is not None else 0
        ref = worktree_guard.keep_off_branch(repo.root, check, lane_id, attempt, branch(lane_id))
        if ref:  # commits made off the lane branch outlive its worktree
            kept = f"kept commits of {shown} ({check.problem}) at {ref}"
            report.add(report.kept_refs, kept, kept)
        reason = ""
        if lane is not None and lane.status == "running":
            reason = "its lane is running"
        elif item.dirty:
            listed = ", ".join(item.dirty[:10]) + (" ..." if len(item.dirty) > 10 else "")
            reason = f"uncommitted changes: {listed}"
        elif tree.locked:
            reason = "it is locked (`git worktree unlock` it)"
        if reason and not force:
            report.add(report.kept, f"{shown} ({reason})", f"kept worktree {shown} ({reason})")
            busy.add(tree.branch or "")
            continue
        if reason:
            say(f"removing worktree {shown} despite {reason} (--force)")
        doomed.append(item)
    return doomed


def _remove(
    repo: Repo,
    doomed: list[_Tree],
    step: Callable[[str | None], None],
    report: CleanupReport,
    busy: set[str],
) -> None:
    """Delete the folders in parallel, outside git's admin lock, then unregister them
    in one step. A kill between the two leaves entries whose folders are gone: the next
    cleanup prunes them."""
    for item in (item for item in doomed if item.check is None):
        git.worktree_remove(repo.root, item.tree.path)  # rare: a folder deleted by hand
        line = f"pruned stale worktree entry {item.shown} (its folder was gone)"
        report.add(report.pruned, item.shown, line)
    present = [item for item in doomed if item.check is not None]
    admins: list[Path] = []
    with ThreadPoolExecutor(_workers()) as pool:
        results = pool.map(lambda item: _remove_folder(item.tree.path), present)
        for n, (item, problem) in enumerate(zip(present, results, strict=True), 1):
            step(f"removed {n}/{len(present)}: {item.shown}")
            if problem is None and item.check is not None and item.check.admin is not None:
                admins.append(item.check.admin)
                report.add(report.removed, item.shown, f"removed worktree {item.shown}")
                continue
            why = f"{item.shown} (could not delete it: {problem})"
            report.add(report.kept, why, f"kept worktree {why}")
            busy.add(item.tree.branch or "")
    if admins:
        git.worktree_forget(repo.root, admins)


def _delete_branches(
    repo: Repo,
    tracker: Tracker,
    force: bool,
    say: Callable[[str], None],
    step: Callable[[str | None], None],
    report: CleanupReport,
    busy: set[str],
    resetting: bool,
) -> None:
    """Merged lane branches (all, with `force`) deleted in one transaction; the rest kept
    and named. Two git calls whatever the number of lanes."""
    root = repo.root
    step("checking lane branches")
    heads = git.ref_heads(root, "refs/heads/lane-*")
    base_head = git.head_commit(root, f"refs/heads/{tracker.base_branch}")
    merged = git.refs_merged_into(root, base_head, "refs/heads/lane-*") if base_head else set()
    doomed: dict[str, str] = {}
    for lane_id, lane in sorted(tracker.lanes.items()):
        name = branch(lane_id)
        head = heads.get(name)
        if head is None:
            continue
        if name in busy:
            why = f"{name} (checked out in a kept worktree)"
            report.add(report.kept_branches, why, f"kept branch {why}")
            continue
        if name not in merged and not force:
            why = (
                f"{name} ({lane.status}, at {head[:10]}, not in {tracker.base_branch}): "
                + _keep_advice(lane_id, name, resetting)
            )
            report.add(report.kept_branches, why, f"kept branch {why}")
            continue
        if name not in merged:
            say(
                f"deleting unmerged branch {name} at {head[:10]} (--force); "
                f"`git branch {name} {head[:10]}` brings it back until git prunes it"
            )
        doomed[name] = head
    if doomed:
        step(f"deleting {len(doomed)} branches")
        git.delete_refs(root, {f"refs/heads/{name}": head for name, head in doomed.items()})
    for name in doomed:
        report.add(report.deleted, name, f"deleted branch {name}")


def reset(repo: Repo, force: bool = False, say: Callable[[str], None] = print) -> Path:
    """Clean up (the same safety rules as `cleanup`), archive the tracker, start afresh.

    Unmerged lane branches and worktrees with uncommitted changes survive unless
    `force`; the archived tracker still names them. `say` hears what cleanup did.
    """
    old = repo.store.read()
    marked = restart.mark_kept_branches(repo, old)  # kept branches stay adoptable
    for line in cleanup(repo, force=force, say=say, resetting=True).lines():
        say(line)
    restart.forget_gone_branches(repo, marked)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    archived = repo.store.archive(repo.layout.archive, stamp)
    base_commit = git.head_commit(repo.root, f"refs/heads/{old.base_branch}") or old.base_commit
    repo.store.replace(
        Tracker(repo=old.repo, base_branch=old.base_branch, base_commit=base_commit),
        "reset",
    )
    return archived
