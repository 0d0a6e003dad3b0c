"""Rework: the agent fixes what it broke (DESIGN.md §13).

A lane that conflicts with the base branch, or whose merge fails `[merge] verify`, goes
back to its own agent as a new attempt, through the same execution machinery as
`execute` (supervisor, timeout, auth hold, cost). For a conflict, the base branch is
first merged into the lane branch in its worktree with the markers left in place; the
agent gets `ORCHESTREE_REWORK` (`conflict`, `verify` or `review`), a JSON file named by
`ORCHESTREE_REWORK_FILE` with the details, and a prompt saying the same. `rerun` (for
deterministic agents) instead starts the lane over from the current base.

`begin` + `run` are the reusable pair (`orchestree rework <lane>` with `review` is the
other caller); `merge_until_done` is merge's loop: merge, rework, merge again, until
every lane is merged or has used `[merge] max_rework`.

Each step survives a SIGKILL: the lane's earlier head is kept under
`refs/orchestree/attempts/<lane>/<n>` before anything moves, the tracker says
`pending` with the rework recorded before an agent starts, and a lane head that still
holds markers or lacks the base is refused at merge time (`head_problem`), whenever it
got there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from orchestree import git, limits, worktree_guard
from orchestree.agents.prompt import REWORK_TAIL_CHARS
from orchestree.errors import GitError, UserError
from orchestree.layout import branch
from orchestree.merge.results import EVERY_LANE, MergeScope
from orchestree.models import Lane, LaneMerge, LaneRework, ReworkReason, Tracker

if TYPE_CHECKING:
    from orchestree.lanebook import Summary
    from orchestree.merge.results import MergeReport, Watch
    from orchestree.repo import Repo

Reporter = Callable[[str], None]


@dataclass
class Details:
    """What the agent is told (the JSON of `ORCHESTREE_REWORK_FILE`)."""

    reason: ReworkReason
    files: list[str] = field(default_factory=list)  # conflicting, or holding markers
    others: list[dict[str, object]] = field(default_factory=list)  # {lane, name, tasks}
    verify_tail: str = ""
    comments: str = ""
    base_branch: str = ""
    base: str = ""  # the base commit merged into the lane branch (a conflict)
    count: int = 0  # this lane's rework number, 1 for the first


def budget(repo: Repo, lane: Lane) -> int:
    """How many more reworks `[merge] max_rework` allows this lane."""
    used = lane.rework.count if lane.rework is not None else 0
    return max(repo.config.merge.max_rework - used, 0)


def mode_for(repo: Repo, status: str) -> str:
    """What `[merge]` says to do with a lane that ended `status`: report, rework, rerun."""
    if status == "conflict":
        return repo.config.merge.on_conflict
    if status == "verify_failed":
        return repo.config.merge.on_verify_fail
    return "report"


def others_meeting(tracker: Tracker, lane_id: str, files: list[str]) -> list[dict[str, object]]:
    """The merged lanes whose changes touch `files`: the work this lane's meets."""
    wanted = set(files)
    found: list[dict[str, object]] = []
    for other_id, other in tracker.lanes.items():
        if other_id == lane_id or other.status != "merged":
            continue
        if wanted & set(other.changed_files):
            found.append({"lane": other_id, "name": other.name, "tasks": list(other.tasks)})
    return found


# --- one lane: begin a rework attempt ----------------------------------------------------


def begin(repo: Repo, lane_id: str, reason: ReworkReason, details: Details) -> Details:
    """Make `lane_id` ready for a new attempt that reworks it, without starting it:
    keep its head under the attempts ref; for a conflict, merge the base branch into
    its worktree (markers left); write the details file; mark it `pending` with the
    rework recorded. `run` then starts it. Refuses (UserError) a worktree not ours."""
    tracker = repo.store.read()
    lane = tracker.lanes[lane_id]
    root, name = repo.root, branch(lane_id)
    head = git.head_commit(root, f"refs/heads/{name}")
    if head is not None:
        git.keep_attempt_head(root, lane_id, max(lane.attempts, 1), head)
    details.count = (lane.rework.count if lane.rework is not None else 0) + 1
    details.base_branch = tracker.base_branch
    if reason == "rerun":
        _retire(repo, lane_id, lane)
    elif reason == "conflict":
        details.base = git.head_commit(root, f"refs/heads/{tracker.base_branch}") or ""
        found = _merge_base_in(repo, lane_id, lane, details)
        details.files = sorted(set(details.files) | set(found))
    if not details.others and details.files:
        details.others = others_meeting(tracker, lane_id, details.files)
    path = repo.layout.orch / "runs" / f"{lane_id}.rework.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(details), indent=2) + "\n", encoding="utf-8")
    record = LaneRework(
        reason=reason,
        count=details.count,
        file=repo.layout.rel(path),
        base=details.base or None,
        files=details.files,
    )
    _mark_pending(repo, lane_id, record, reason == "rerun")
    return details


def _merge_base_in(repo: Repo, lane_id: str, lane: Lane, details: Details) -> list[str]:
    """Merge the base into the lane's worktree (re-adding the worktree when cleanup
    removed it); the files left with markers, including ones an earlier rework left."""
    from orchestree.executors import launch

    path, name = repo.layout.worktree(lane_id), branch(lane_id)
    launch.prepare(repo, lane_id, lane, lane.start_commit or details.base)
    check = worktree_guard.verify(repo.root, path, name)
    if check.problem or check.admin is None:
        raise UserError(f"lane {lane_id!r}: {check.problem}; nothing was reworked")
    env = git.worktree_env(check.admin, path)
    if git.merge_in_progress(path, env):  # an interrupted rework: its markers are there
        return sorted(set(details.files) | set(git.unmerged_files(path, env)))
    dirty = git.dirty_files(path)
    if dirty:
        raise UserError(
            f"lane {lane_id!r}: its worktree has uncommitted changes ({', '.join(dirty[:5])}); "
            "commit or discard them, then merge again"
        )
    name_, email = git.identity(repo.root)
    who = {"GIT_AUTHOR_NAME": name_, "GIT_AUTHOR_EMAIL": email,
           "GIT_COMMITTER_NAME": name_, "GIT_COMMITTER_EMAIL": email}  # fmt: skip
    message = f"Merge {details.base_branch} into {name} (orchestree rework {details.count})"
    found = git.merge_into_worktree(path, details.base, message, {**env, **who})
    head = git.head_commit(repo.root, f"refs/heads/{name}")
    earlier = lane.rework.files if lane.rework is not None else []
    left = git.files_with_markers(repo.root, head, earlier) if head and earlier else []
    return sorted(set(found) | set(left))  # with what an earlier rework left marked


def _retire(repo: Repo, lane_id: str, lane: Lane) -> None:
    from orchestree import restart

    how = f'set [merge] on_conflict = "report" and resolve lane {lane_id} by hand'
    restart.retire_branch(repo, lane_id, lane, how)


def _mark_pending(repo: Repo, lane_id: str, record: LaneRework, fresh: bool) -> None:
    from orchestree import restart

    def change(t: Tracker) -> None:
        lane = t.lanes[lane_id]
        if fresh:
            restart.forget_start(lane)
        lane.status = "pending"
        lane.rework = record
        lane.merge = LaneMerge()
        lane.error = None

    repo.store.update(change, "rework", lane=lane_id, reason=record.reason, count=record.count)


# --- running the attempts ---------------------------------------------------------------


def run(repo: Repo, lane_ids: set[str], report: Reporter) -> Summary:
    """Run the rework attempts `begin` prepared, in parallel, under `execute`'s own
    machinery (supervision, timeouts, auth holds, cost accounting)."""
    from orchestree.execution import Execution

    return Execution(repo, lane_ids, None, report).run()


# --- merge's loop ----------------------------------------------------------------------


def merge_until_done(
    repo: Repo,
    scope: MergeScope = EVERY_LANE,
    watch: Watch | None = None,
    rework: bool = True,
    report: Reporter = print,
) -> MergeReport:
    """`merge`, then rework (or rerun) what `[merge]` says to, then merge again, until
    every lane is merged or has used its bounds. With `scope.check`, predict which lanes
    would go to rework. Ctrl-C during a rework leaves the base branch as the merges
    before it left it and the lane `cancelled`, resumed by the next `merge`."""
    from orchestree.merge import merger

    settings = repo.config.merge
    modes = {settings.on_conflict, settings.on_verify_fail}
    wanted = rework and scope.kind != "probe" and modes != {"report"}
    # A rework acts in the lane's worktree: here, not on a remote worker.
    on = wanted and repo.config.executor.kind == "local"
    if scope.check:
        result = merger.merge(repo, scope, watch)
        if on:
            result.notes += _predictions(repo, result)
        return _with_counts(repo, result)
    if wanted and not on:
        report('note: rework needs [executor] kind = "local"; conflicts are reported')
    total: MergeReport | None = None
    if on:
        _resume_interrupted(repo, scope.lane_id, report)
    refused: set[str] = set()  # lanes whose worktree could not be reworked: reported once
    while True:
        result = merger.merge(repo, scope, watch)
        total = result if total is None else _combine(total, result)
        todo = _choose(repo, result, refused) if on else {}
        if not todo:
            return _with_counts(repo, total)
        refused |= _rework_round(repo, todo, report)


def _choose(
    repo: Repo, result: MergeReport, refused: set[str]
) -> dict[str, tuple[ReworkReason, Details]]:
    tracker = repo.store.read()
    todo: dict[str, tuple[ReworkReason, Details]] = {}
    # This merge's outcomes, and lanes an earlier merge left conflicted or failing verify.
    found = {o.lane_id: (o.status, o.conflicts, o.reason) for o in result.outcomes}
    for lane_id, status in result.outstanding.items():
        earlier = tracker.lanes.get(lane_id)
        if earlier is not None and lane_id not in found:
            found[lane_id] = (status, earlier.merge.conflicts, earlier.error or "")
    for lane_id, (status, files, said) in found.items():
        lane = None if lane_id in refused else tracker.lanes.get(lane_id)
        mode = mode_for(repo, status)
        if lane is None or lane.status != status or mode == "report" or not budget(repo, lane):
            continue
        if status == "verify_failed":
            todo[lane_id] = ("verify", Details("verify", verify_tail=said[-REWORK_TAIL_CHARS:]))
        elif mode == "rerun":
            todo[lane_id] = ("rerun", Details("rerun", files=list(files)))
        else:
            todo[lane_id] = ("conflict", Details("conflict", files=list(files)))
    return todo


def _rework_round(
    repo: Repo, todo: dict[str, tuple[ReworkReason, Details]], report: Reporter
) -> set[str]:
    """Begin and run the chosen reworks; returns the lanes that could not begin."""
    if limits.stop_reworks(repo.store, repo.config, sorted(todo), report):
        return set(todo)  # they stay conflicted or failing verify, each named once
    started: set[str] = set()
    refused: set[str] = set()
    for lane_id, (reason, details) in todo.items():
        try:
            got = begin(repo, lane_id, reason, details)
        except (UserError, GitError) as exc:  # a worktree not ours, files in the way
            report(f"! {lane_id}: not reworked: {exc}")
            refused.add(lane_id)
            continue
        started.add(lane_id)
        what = "rerun from the current base" if reason == "rerun" else f"{reason} rework"
        said = f" (files: {', '.join(got.files)})" if got.files else ""
        report(f"↻ {lane_id}: {what} {got.count} of {repo.config.merge.max_rework}{said}")
    if started:
        _run_or_stop(repo, started, report)
    return refused


def _run_or_stop(repo: Repo, lane_ids: set[str], report: Reporter) -> None:
    summary = run(repo, lane_ids, report)
    for message in summary.held.values():
        report(f"! held: {message}")
    if summary.interrupted:
        base = repo.store.read().base_branch
        report(f"rework interrupted: {base} was not touched by it; `orchestree merge` "
               "resumes the rework")  # fmt: skip
        raise KeyboardInterrupt


def _resume_interrupted(repo: Repo, lane_id: str | None, report: Reporter) -> None:
    """A rework that Ctrl-C cancelled, or that a killed merge left pending or running,
    runs again (or is adopted) under the same rework number."""
    tracker = repo.store.read()
    lanes = {
        k
        for k, lane in tracker.lanes.items()
        if lane.status in ("cancelled", "pending", "running")
        and lane.rework is not None
        and lane_id in (None, k)
    }
    if not lanes:
        return

    def change(t: Tracker) -> None:
        for k in lanes:
            if t.lanes[k].status == "cancelled":
                t.lanes[k].status = "pending"
                t.lanes[k].error = None

    repo.store.update(change, "rework-resume", lanes=sorted(lanes))
    for k in sorted(lanes):
        report(f"↻ {k}: resuming its interrupted rework")
    _run_or_stop(repo, lanes, report)


def _combine(total: MergeReport, later: MergeReport) -> MergeReport:
    """One report for the whole loop: the first plan's old base, the last one's new,
    each lane's latest outcome."""
    outcomes = {o.lane_id: o for o in total.outcomes}
    outcomes.update({o.lane_id: o for o in later.outcomes})
    total.outcomes = list(outcomes.values())
    total.new = later.new if later.outcomes else total.new
    total.notes += [n for n in later.notes if n not in total.notes]
    total.outstanding = {k: v for k, v in later.outstanding.items() if k not in outcomes}
    return total


def _with_counts(repo: Repo, result: MergeReport) -> MergeReport:
    lanes = repo.store.read().lanes
    for o in result.outcomes:
        lane = lanes.get(o.lane_id)
        o.reworks = lane.rework.count if lane is not None and lane.rework is not None else 0
    return result


def _predictions(repo: Repo, result: MergeReport) -> list[str]:
    """`merge --check` with rework on: which lanes would go back to their agent."""
    lanes = repo.store.read().lanes
    notes = []
    for o in result.outcomes:
        lane = lanes.get(o.lane_id)
        mode = mode_for(repo, o.status)
        if lane is None or mode == "report":
            continue
        left = budget(repo, lane)
        n = repo.config.merge.max_rework - left + 1
        notes.append(
            f"lane {o.lane_id} would go to {mode} ({n} of {repo.config.merge.max_rework})"
            if left
            else f"lane {o.lane_id} has used its {repo.config.merge.max_rework} reworks; "
            "it would stay " + o.status
        )
    return notes
