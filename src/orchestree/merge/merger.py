"""Merge completed lanes into the base branch, in dependency order (DESIGN.md §8).

Each lane is merged in memory on top of the running candidate (`git merge-tree
--write-tree`, then `git commit-tree` for a `--no-ff` merge commit), so lane-against-lane
conflicts are caught and no working tree is written until the base branch moves, once,
to the final candidate (`publish.py`). `merge --check` is the same computation without
that step and without any tracker write.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from pathlib import Path
from typing import cast

from orchestree import doctor, fastpath, git
from orchestree.errors import EnvironmentRefused, UserError
from orchestree.layout import branch
from orchestree.merge import guard, publish
from orchestree.merge.batch import verify_in_batches
from orchestree.merge.queue import VerifyQueue
from orchestree.merge.radar import still_ahead
from orchestree.merge.results import EVERY_LANE, STATUSES, MergeReport, MergeScope, Outcome, Watch
from orchestree.merge.verify import verifier
from orchestree.models import (
    MERGEABLE,
    PRIORITY_RANK,
    UNSUCCESSFUL,
    Lane,
    LaneMerge,
    LaneStatus,
    MergeStatus,
    Tracker,
)
from orchestree.repo import Repo
from orchestree.runlock import run_lock

MAX_PLANS = 3  # the base moved under us this many times: give up and say so


def merge(repo: Repo, scope: MergeScope = EVERY_LANE, watch: Watch | None = None) -> MergeReport:
    """Merge the completed lanes of `scope` (or, with `scope.check`, only predict).
    `watch` hears each step as it happens."""
    lane_id, kind = scope.lane_id, scope.kind
    if scope.check:
        tracker = repo.store.read()
        notes = _preconditions(repo.root, tracker.base_branch, check=True)
        if publish.read_journal(repo.layout) is not None:
            notes.append("an interrupted merge awaits repair; `orchestree merge` finishes it")
        report = _plan(repo, tracker, lane_id, check=True, notes=notes, kind=kind, watch=watch)
        report.outstanding = outstanding(tracker, report, lane_id, kind)
        refused = _overwrite_problem(repo, report)
        if refused:
            report.notes.append(f"`merge` will refuse: {refused}")
        return report
    doctor.require(repo.config, repo.root, "merge")  # the verify command's program
    with run_lock(repo.layout, "merge"):
        notes = []
        repaired = publish.recover(repo.layout, repo.root)
        if repaired:
            notes.append(repaired)
        for _ in range(MAX_PLANS):
            tracker = repo.store.read()
            _preconditions(repo.root, tracker.base_branch, check=False)
            report = _plan(repo, tracker, lane_id, check=False, notes=notes, kind=kind,
                           watch=watch)  # fmt: skip
            if not report.outcomes:
                report.outstanding = outstanding(tracker, report, lane_id, kind)
                return report
            refused = _overwrite_problem(repo, report)
            if refused:
                raise EnvironmentRefused(refused)
            if report.new == report.old or publish.publish(
                repo.layout, repo.root, report.base_branch, report.old, report.new
            ):
                _record(repo, report, kind)
                publish.clear_journal(repo.layout)
                report.outstanding = outstanding(repo.store.read(), report, lane_id, kind)
                return report
            notes.append(f"{report.base_branch} moved while merging; planned again")
        raise EnvironmentRefused(
            f"{tracker.base_branch} moved {MAX_PLANS} times while merging; nothing was "
            "published; merge again when it is quiet"
        )


def outstanding(
    tracker: Tracker, report: MergeReport, lane_id: str | None, kind: str | None
) -> dict[str, str]:
    """Lanes in scope, not decided by this merge, that still need a person: conflicted,
    failed or blocked ones, and completed ones a merge skipped."""
    from orchestree.planner_agent import is_planner_lane

    decided = {o.lane_id for o in report.outcomes}
    found: dict[str, str] = {}
    for lid, lane in tracker.lanes.items():
        if lid in decided or (lane_id is not None and lid != lane_id):
            continue
        if kind not in (None, lane.kind) or is_planner_lane(lane):
            continue  # a planner agent's lane is never merged (its plan is read instead)
        if lane.status in UNSUCCESSFUL or lane.merge.status == "skipped":
            found[lid] = lane.status if lane.merge.status != "skipped" else "not merged"
    return found


def _preconditions(root: Path, base: str, check: bool) -> list[str]:
    return base_worktree_problems(root, base, "merge again", check=check)


def base_worktree_problems(root: Path, base: str, then: str, check: bool = False) -> list[str]:
    """The base worktree must be on the base branch with no uncommitted changes to
    tracked files, else merging would move the user's files under them. Refuses (exit
    3) saying what to do and `then` what; with `check`, only notes a dirty worktree."""
    here = git.current_branch(root)
    if here != base:
        where = f"on branch {here!r}" if here else "at a detached HEAD"
        raise EnvironmentRefused(
            f"{root} is {where}, not on the base branch {base!r}; "
            f"run `git switch {base}` there, then {then}"
        )
    dirty = git.dirty_files(root, untracked=False)
    if not dirty:
        return []
    listed = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
    if check:
        return [f"uncommitted changes to {listed}: `merge` will refuse until they are committed"]
    raise EnvironmentRefused(
        f"{root} has uncommitted changes to tracked files ({listed}); "
        f"commit or stash them, then {then}"
    )


def select(tracker: Tracker, lane_id: str | None, kind: str | None = None) -> list[str]:
    """The lanes to merge, in dependency order, then priority, then plan order."""
    if lane_id is None:
        chosen = {
            k
            for k, lane in tracker.lanes.items()
            if lane.status == "completed" and kind in (None, lane.kind)
        }
        return merge_order(tracker.lanes, chosen)
    lane = tracker.lanes.get(lane_id)
    if lane is None:
        known = ", ".join(sorted(tracker.lanes)) or "none"
        raise UserError(f"there is no lane {lane_id!r} (lanes: {known})")
    if lane.status == "merged":
        return []
    if lane.status not in MERGEABLE:
        raise UserError(
            f"lane {lane_id!r} is {lane.status}; only a completed lane can be merged "
            f"(run it first: `orchestree exec-lane {lane_id}`)"
        )
    waiting = [d for d in lane.depends_on if tracker.lanes[d].status != "merged"]
    if waiting:
        raise UserError(
            f"lane {lane_id!r} depends on {', '.join(waiting)}, not merged yet; merge "
            f"{'it' if len(waiting) == 1 else 'them'} first (`orchestree merge --lane "
            f"{waiting[0]}`) or merge all completed lanes with `orchestree merge`"
        )
    return [lane_id]


def merge_order(lanes: dict[str, Lane], chosen: set[str]) -> list[str]:
    """Dependencies first; among lanes ready together, higher priority, then plan order."""
    waits = {k: {d for d in lanes[k].depends_on if d in chosen} for k in chosen}
    dependents: dict[str, list[str]] = {k: [] for k in chosen}
    for k, deps in waits.items():
        for d in deps:
            dependents[d].append(k)

    def key(k: str) -> tuple[int, int, str]:
        return (PRIORITY_RANK[lanes[k].priority], lanes[k].order, k)

    ready = [key(k) for k, deps in waits.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        lane_id = heapq.heappop(ready)[2]
        order.append(lane_id)
        for child in dependents[lane_id]:
            waits[child].discard(lane_id)
            if not waits[child]:
                heapq.heappush(ready, key(child))
    return order


def _overwrite_problem(repo: Repo, report: MergeReport) -> str | None:
    """Why the fast-forward must not happen: it would write over files untracked or
    ignored in the base worktree (git refuses only the untracked ones), by lane."""
    holder = publish.checked_out_in(repo.root, report.base_branch)
    chain = [(o.lane_id, o.commit) for o in report.outcomes if o.fresh and o.commit]
    if holder is None or not chain:
        return None
    lanes = guard.would_overwrite(repo.root, holder, report.old, chain)
    if not lanes:
        return None
    said = "; ".join(f"lane {lane_id}: {why}" for lane_id, why in lanes.items())
    return f"{said}; nothing was published"


def _plan(
    repo: Repo,
    tracker: Tracker,
    lane_id: str | None,
    check: bool,
    notes: list[str],
    kind: str | None = None,
    watch: Watch | None = None,
) -> MergeReport:
    root, base = repo.root, tracker.base_branch
    old = git.head_commit(root, f"refs/heads/{base}")
    if old is None:
        raise EnvironmentRefused(f"the base branch {base!r} does not exist in {root}")
    report = MergeReport(check, base, old, old, notes=list(notes))
    order = select(tracker, lane_id, kind)
    if not order:
        report.notes.append(_nothing_to_do(tracker, lane_id))
        return report
    in_base = git.refs_merged_into(root, old, "refs/heads/lane-*")
    branches = git.ref_heads(root, "refs/heads/lane-*")
    merges: dict[str, str] = {}  # second parent -> merge commit, read when first needed
    failed: dict[str, str] = {}  # lane -> its outcome, for lanes that were not merged
    planned = set(order)
    own = guard.own_paths(repo.layout, old)
    # The branch heads that hold none of orchestree's paths, asked of git in one call.
    heads = [h for lid in order if (h := branches.get(branch(lid)))]
    clean = set(heads) - git.revs_holding(root, heads, own)

    def decide(lid: str) -> Outcome:
        lane = tracker.lanes[lid]
        skipped = _skip_reason(tracker, lid, failed, planned)
        if skipped is not None:
            return skipped
        head, on_branch = _lane_head(root, branches.get(branch(lid)), lane)
        if head is None:
            return Outcome(lid, "skipped", reason=f"{branch(lid)} and its head are gone")
        if branch(lid) in in_base if on_branch else git.is_ancestor(root, head, old):
            if not merges:
                merges.update(git.merges_by_second_parent(root, old, tracker.base_commit))
            return Outcome(lid, "merged", merges.get(head, head), reason=f"already in {base}")
        if lane.depends_on and git.is_ancestor(root, head, report.new):
            return Outcome(lid, "merged", report.new, reason="brought in by its dependencies")
        refused = guard.own_paths_problem(root, lid, head, own, clean)
        if refused:
            return Outcome(lid, "skipped", reason=refused)
        unresolved = guard.head_problem(root, lane, head)  # markers never reach the base
        if unresolved is not None:
            return Outcome(lid, "conflict", conflicts=unresolved[1], reason=unresolved[0])
        outcome = _merge_one(root, lid, lane, head, report.new)
        if outcome.status == "merged" and outcome.commit:
            report.new = outcome.commit
        return outcome

    def step(lid: str, what: str) -> None:
        if watch is not None:
            watch.step(lid, what)

    if watch is not None:
        watch.begin(order)
    with verifier(repo) as verify:
        queue = VerifyQueue(report, tracker, decide, verify, step, watch, failed)
        report.verify_runs = verify_in_batches(order, repo.config.merge.batch, queue)
    return report


def _skip_reason(
    tracker: Tracker, lane_id: str, failed: dict[str, str], planned: set[str]
) -> Outcome | None:
    for dep in tracker.lanes[lane_id].depends_on:
        status = failed.get(dep) or (None if dep in planned else tracker.lanes[dep].status)
        if status is not None and status != "merged":
            return Outcome(lane_id, "skipped", reason=f"depends on {dep}, which is {status}")
    return None


def _lane_head(root: Path, on_branch: str | None, lane: Lane) -> tuple[str | None, bool]:
    """The lane's branch head, else its recorded head commit; and whether it is the branch."""
    if on_branch is not None:
        return on_branch, True
    return (git.head_commit(root, lane.head_commit) if lane.head_commit else None), False


def _merge_one(root: Path, lane_id: str, lane: Lane, head: str, candidate: str) -> Outcome:
    """Merge the lane on top of `candidate` in memory; its verify comes later (`_Queue`)."""
    result = git.merge_tree(root, candidate, head)
    if result.tree is None:
        return Outcome(lane_id, "conflict", conflicts=result.conflicts)
    commit = git.commit_tree(root, result.tree, [candidate, head], merge_message(lane_id, lane))
    return Outcome(lane_id, "merged", commit)


def merge_message(lane_id: str, lane: Lane) -> str:
    """The merge commit's message: the lane, its name and its tasks.

    A probe's tasks are the command line that ran it on this machine (the path of its
    python, its options): they stay in the tracker and out of the repository's history."""
    title = f"Merge {branch(lane_id)}" + (f": {lane.name}" if lane.name else "")
    tasks = "" if lane.kind == "probe" else "".join(f"- {task}\n" for task in lane.tasks)
    body = f"\nTasks:\n{tasks}" if tasks else ""
    return f"{title}\n{body}\nOrchestree-Lane: {lane_id}\n"


def _nothing_to_do(tracker: Tracker, lane_id: str | None) -> str:
    if lane_id is not None:
        return f"lane {lane_id} is already merged; nothing to do"
    from orchestree.report import outcome, tally

    if not tracker.lanes:
        return fastpath.NO_LANES_TO_MERGE  # as `merge` of no lanes says it without models
    return f"no completed lanes to merge ({tally([outcome(x) for x in tracker.lanes.values()])})"


def _record(repo: Repo, report: MergeReport, kind: str | None) -> None:
    def change(tracker: Tracker) -> None:
        for o in report.outcomes:
            lane = tracker.lanes.get(o.lane_id)
            if lane is None or lane.status not in MERGEABLE:
                continue
            if o.status == "skipped":
                lane.merge = LaneMerge(status="skipped")
                lane.error = f"not merged: {o.reason}"
                continue
            lane.status = cast(LaneStatus, o.status)
            lane.merge = LaneMerge(
                status=cast(MergeStatus, o.status), commit=o.commit, conflicts=o.conflicts
            )
            # A conflict's reason is a failed rework's (markers left, base not merged).
            lane.error = (o.reason or None) if o.status in ("verify_failed", "conflict") else None
        tracker.base_commit = report.new  # where the base branch now is
        tracker.radar = still_ahead(tracker)  # a merged lane's findings are the base's now
        tracker.phase = 1 if kind == "probe" else 4  # merging probe results ends phase 1
        tracker.status = "failed" if report.exit_code else "completed"

    outcomes = {o.lane_id: o.status for o in report.outcomes}
    repo.store.update(change, "merge", old=report.old, new=report.new, lanes=outcomes)


def outcome_lines(o: Outcome, check: bool, width: int = 0) -> list[str]:
    """One lane's line of `merge`'s output (and a failed verify's tail below it)."""
    from orchestree.visible import visible

    verbs = {"merged": "merge", "conflict": "conflict", "skipped": "skip"}
    verb = verbs.get(o.status, "fail verify")
    head = f"would {verb}" if check else o.status
    if o.status == "merged":
        detail = f"({o.reason})" if o.reason else f"as {o.commit[:10] if o.commit else '?'}"
        if o.unchanged:  # nothing of it reached the base: say so, not just "merged"
            head = "would skip" if check else "changed nothing"
            detail = "(the lane changed no file; nothing to merge)"
    elif o.status == "conflict":
        detail = o.reason or f"conflicts in {', '.join(o.conflicts) or '(no file named)'}"
    else:
        detail = o.reason.splitlines()[0] if o.reason else ""
    lines = [visible(f"{head:<18} {o.lane_id:<{width}}  {detail}")]
    if o.status == "verify_failed":
        lines += [visible(f"    {line}", keep="\t") for line in o.reason.splitlines()[1:]]
    return lines


def describe(report: MergeReport, lanes: bool = True) -> list[str]:
    """The summary `merge` prints: one line per lane (unless `lanes` is False: a
    `Watch` printed them as they were decided), then what happened to the base."""
    would = "would " if report.check else ""
    lines = [f"note: {note}" for note in report.notes]
    width = max((len(o.lane_id) for o in report.outcomes), default=0)
    for o in report.outcomes if lanes else []:
        lines += outcome_lines(o, report.check, width)
    unchanged = sum(o.status == "merged" and o.unchanged for o in report.outcomes)
    counts = {s: sum(o.status == s for o in report.outcomes) for s in STATUSES}
    counts["merged"] -= unchanged
    if report.outcomes:
        named = [f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n]
        tally = ", ".join(named + ([f"{unchanged} changed nothing"] if unchanged else []))
        move = (
            f"{report.base_branch} {would}{'stay' if report.check else 'stayed'} at "
            f"{report.old[:10]}"
            if report.new == report.old
            else f"{report.base_branch} {would}{'move' if report.check else 'moved'} "
            f"{report.old[:10]} -> {report.new[:10]}"
        )
        lines.append(f"{move} ({tally})")
    for o in report.outcomes:
        if o.status == "conflict" and not report.check:
            lines.append(
                f"to fix {o.lane_id}: merge {report.base_branch} into {branch(o.lane_id)} in "
                f"its worktree, resolve, commit, then `orchestree merge --lane {o.lane_id}`"
            )
    if report.outstanding:
        listed = ", ".join(f"{k} ({v})" for k, v in sorted(report.outstanding.items()))
        lines.append(
            f"still outstanding from earlier runs: {listed}; see `orchestree status`, "
            "then `orchestree retry <lane>` or `orchestree merge --lane <lane>`"
        )
    return lines


class ReportWatch:
    """A `Watch` that says each decided lane through `report` at once (one line per
    lane without a TTY), and hands steps to `report.step` when it has one (a live line)."""

    def __init__(self, report: Callable[[str], None], check: bool = False) -> None:
        self.report, self.check, self.width = report, check, 0

    def begin(self, order: list[str]) -> None:
        self.width = max((len(k) for k in order), default=0)

    def step(self, lane_id: str, what: str) -> None:
        step = getattr(self.report, "step", None)
        if step is not None:
            step(f"{what} {lane_id}")

    def done(self, outcome: Outcome) -> None:
        step = getattr(self.report, "step", None)
        if step is not None:
            step(None)
        for line in outcome_lines(outcome, self.check, self.width):
            self.report(line)
