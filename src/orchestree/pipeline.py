"""Phases 1 and 2, and the whole pipeline: probes → plan → execute → merge.

Probes are lanes of kind `probe`, run by the same scheduler and runner as any lane;
their branches are then merged into the base branch so their results land in
`docs/_generated/`. `plan` turns the gaps found there into lanes.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestree import execution, git, merger, orchestrator, planner, probes
from orchestree.config import ProbeConfig
from orchestree.errors import UserError
from orchestree.layout import GENERATED_DIR, agent_name, branch
from orchestree.models import Plan, Tracker
from orchestree.orchestrator import Repo

DEFAULT_PROBES = ("inventory", "markers", "tests", "lint")
Reporter = Callable[[str], None]


def configured_probes(repo: Repo) -> dict[str, ProbeConfig]:
    if repo.config.probes:
        return dict(repo.config.probes)
    return {name: ProbeConfig(builtin=name) for name in DEFAULT_PROBES}


def probe_lane(repo: Repo, probe_id: str, cfg: ProbeConfig) -> dict[str, Any]:
    """The lane that runs one probe: a built-in analyser, or an agent with a prompt."""
    out_dir = f"{GENERATED_DIR}/{probe_id}"
    timeout = cfg.timeout_s or repo.config.defaults.timeout_s
    lane: dict[str, Any] = {"kind": "probe", "priority": cfg.priority, "timeout_s": timeout}
    if cfg.builtin is not None:
        argv = probes.probe_argv(
            cfg.builtin, probe_id, out_dir=out_dir, command=cfg.command, timeout_s=timeout * 0.9
        )
        return {**lane, "name": f"probe {cfg.builtin}", "agent": "shell",
                "tasks": [shlex.join(argv)]}  # fmt: skip
    if cfg.prompt is None:
        raise UserError(
            f"orchestree.toml: [probes.{probe_id}] needs `builtin` (one of "
            f"{', '.join(probes.BUILTIN_PROBES)}) or `agent` and `prompt`"
        )
    prompt = probes.agent_probe_prompt(probe_id, cfg.prompt, out_dir)
    return {**lane, "name": f"probe {probe_id}", "agent": cfg.agent, "prompt": prompt,
            "tasks": [cfg.prompt]}  # fmt: skip


def register_probes(repo: Repo) -> list[str]:
    """(Re)register the configured probes as pending lanes; a finished probe starts over."""
    wanted = {pid: probe_lane(repo, pid, cfg) for pid, cfg in configured_probes(repo).items()}
    tracker = repo.store.read()
    for probe_id in wanted:
        old = tracker.lanes.get(probe_id)
        if old is not None and old.kind != "probe":
            raise UserError(
                f"probe id {probe_id!r} is already a lane of the plan; rename the probe"
            )
        if old is not None and old.status not in ("pending", "running"):
            _forget_probe(repo, probe_id, tracker)
    fresh = {pid: lane for pid, lane in wanted.items() if pid not in _live(repo)}
    if fresh:
        orchestrator.add_lanes(repo, fresh, replace=True)
    return list(wanted)


def _live(repo: Repo) -> set[str]:
    tracker = repo.store.read()
    return {k for k, v in tracker.lanes.items() if v.kind == "probe" and v.status == "running"}


def _forget_probe(repo: Repo, probe_id: str, tracker: Tracker) -> None:
    """Drop a finished probe lane, its worktree and its branch, so it can run afresh.

    A probe's branch holds only its generated results; one not merged into the base
    is refused rather than deleted, so nothing is lost without the user's word.
    """
    root, name = repo.root, branch(probe_id)
    head = git.head_commit(root, f"refs/heads/{name}")
    base = git.head_commit(root, f"refs/heads/{tracker.base_branch}")
    lane = tracker.lanes[probe_id]
    unmerged = head is not None and base is not None and not git.is_ancestor(root, head, base)
    if unmerged and lane.status == "completed":
        raise UserError(
            f"probe {probe_id!r} has results not merged yet on {name}; run "
            f"`orchestree merge` first (or `git branch -D {name}` to discard them)"
        )
    path = repo.layout.worktree(probe_id)
    if path.exists():
        git.worktree_remove(root, path, force=True)
    if head is not None:
        git.branch_delete(root, name, force=True)

    def change(t: Tracker) -> None:
        t.lanes.pop(probe_id, None)
        t.agents.pop(agent_name(probe_id), None)

    repo.store.update(change, "probe-reset", lane=probe_id)


@dataclass
class ProbesResult:
    run: execution.Summary
    merge: merger.MergeReport | None
    failed: dict[str, str] = field(default_factory=dict)  # probe -> why


def run_probes(repo: Repo, max_parallel: int | None, report: Reporter) -> ProbesResult:
    ids = register_probes(repo)
    run = execution.execute(repo, set(ids), max_parallel, report, kind="probe")
    tracker = repo.store.read()
    failed = {k: tracker.lanes[k].error or tracker.lanes[k].status for k in ids
              if tracker.lanes[k].status not in ("completed", "merged")}  # fmt: skip
    merged = None
    if any(tracker.lanes[k].status == "completed" for k in ids):
        merged = merger.merge(repo, kind="probe")
        for line in merger.describe(merged):
            report(line)
    return ProbesResult(run, merged, failed)


def make_plan(repo: Repo, group_by: str | None = None) -> Plan:
    """The plan from every probe's results in the base worktree (a planner agent's
    `execution_plan.json` is validated the same way)."""
    results, problems = planner.load_results(repo.layout.generated)
    if not results:
        why = f" ({'; '.join(problems)})" if problems else ""
        raise UserError(
            f"no probe results under {repo.layout.generated}{why}; run `orchestree probes` first"
        )
    tracker = repo.store.read()
    probe_ids = {k for k, v in tracker.lanes.items() if v.kind == "probe"}
    plan = planner.make_plan(
        results,
        default_agent=repo.config.defaults.agent,
        group_by=group_by or repo.config.plan.group_by,  # type: ignore[arg-type]
        reserved=probe_ids | {r.probe for r in results},
    )
    for lane_id, lane in plan.lanes.items():
        if lane.agent is not None:
            repo.config.check_agent(lane.agent, f"plan lane {lane_id!r}")
    return plan


def register_plan(repo: Repo, plan: Plan) -> list[str]:
    """Write the plan file and register its lanes (pending ones are redefined)."""
    tracker = repo.store.read()
    lanes = {k: v.model_dump(exclude_defaults=True) for k, v in plan.lanes.items()}
    started = [k for k in lanes if k in tracker.lanes and tracker.lanes[k].status != "pending"]
    for lane_id in started:  # a lane that ran already keeps its record
        lanes.pop(lane_id)
    planner.write_plan(repo.layout.plan_file, plan)
    added = orchestrator.add_lanes(repo, lanes, replace=True) if lanes else []

    def change(t: Tracker) -> None:
        t.phase = 2

    repo.store.update(change, "plan", lanes=added)
    return added


@dataclass
class FullResult:
    probes: ProbesResult
    plan: list[str]
    run: execution.Summary | None
    merge: merger.MergeReport | None

    @property
    def exit_code(self) -> int:
        if self.run is not None and self.run.interrupted:
            return 130
        bad = bool(self.probes.failed) or (self.run is not None and self.run.exit_code != 0)
        return 1 if bad or (self.merge is not None and self.merge.exit_code) else 0


def full(
    path: Path, max_parallel: int | None, report: Reporter, group_by: str | None = None
) -> tuple[Repo, FullResult]:
    """init if needed → probes → plan → execute → merge."""
    repo = orchestrator.init(path).repo
    probed = run_probes(repo, max_parallel, report)
    if probed.run.interrupted:
        return repo, FullResult(probed, [], None, None)
    try:
        plan = make_plan(repo, group_by)
    except UserError as exc:
        report(f"plan: {exc}")
        return repo, FullResult(probed, [], None, None)
    added = register_plan(repo, plan)
    report(f"plan: {len(plan.lanes)} lane(s) from {', '.join(plan.sources) or 'no probe'}")
    if not plan.lanes:
        return repo, FullResult(probed, [], None, None)
    run = execution.execute(repo, set(plan.lanes), max_parallel, report)
    if run.interrupted:
        return repo, FullResult(probed, added, run, None)
    merged = merger.merge(repo)
    for line in merger.describe(merged):
        report(line)
    return repo, FullResult(probed, added, run, merged)
