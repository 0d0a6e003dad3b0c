"""Phases 1 and 2, and the whole pipeline: probes → plan → execute → merge.

Probes are lanes of kind `probe`, run by the same scheduler and launcher as any lane;
their branches are then merged into the base branch so their results land in
`docs/_generated/`. `plan` turns the gaps found there into lanes.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestree import doctor, execution, git, lane_ops, planner, planner_agent, probes
from orchestree.config import ProbeConfig, load_config, probe_set
from orchestree.errors import UserError
from orchestree.lanebook import Summary
from orchestree.layout import GENERATED_DIR, PLAN_FILE, agent_name, branch
from orchestree.merge import merger
from orchestree.merge.results import MergeReport, MergeScope
from orchestree.models import Plan, ProbeResult, Tracker
from orchestree.repo import Repo, find_root, init_repo

Reporter = Callable[[str], None]


def configured_probes(repo: Repo) -> dict[str, ProbeConfig]:
    return probe_set(repo.config)


def describe_probes(repo: Repo) -> str:
    """One line saying which probes run and why, printed on every probes run."""
    configured = repo.config.probes
    parts = []
    for probe_id, cfg in configured_probes(repo).items():
        if probe_id not in configured:
            parts.append(f"{probe_id} (built-in)")
        elif cfg.builtin is not None:
            parts.append(f"{probe_id} ([probes.{probe_id}], built-in {cfg.builtin})")
        else:
            parts.append(f"{probe_id} ([probes.{probe_id}], agent)")
    why = (
        "built-ins kept beside orchestree.toml's probes; [defaults] builtin_probes = false "
        "runs only those"
        if repo.config.defaults.builtin_probes
        else "[defaults] builtin_probes = false: only orchestree.toml's probes"
    )
    return f"probes: {', '.join(parts) or 'none'} — {why}"


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
    """(Re)register the configured probes as pending lanes; a finished probe starts over.

    Everything is checked before anything changes: a refusal leaves the tracker,
    worktrees and branches as they were.
    """
    wanted = {pid: probe_lane(repo, pid, cfg) for pid, cfg in configured_probes(repo).items()}
    tracker = repo.store.read()
    finished = []
    for probe_id in wanted:
        old = tracker.lanes.get(probe_id)
        if old is None:
            continue
        if old.kind != "probe" or planner_agent.is_planner_lane(old):
            raise UserError(
                f"probe id {probe_id!r} is already a lane of the plan; rename the probe"
            )
        if old.status not in ("pending", "running"):
            _refuse_unmerged(repo, probe_id, tracker)
            finished.append(probe_id)
    for probe_id in finished:
        _forget_probe(repo, probe_id)
    fresh = {pid: lane for pid, lane in wanted.items() if pid not in _live(repo)}
    if fresh:
        lane_ops.add_lanes(repo, fresh, replace=True)
    return list(wanted)


def _live(repo: Repo) -> set[str]:
    tracker = repo.store.read()
    return {k for k, v in tracker.lanes.items() if v.kind == "probe" and v.status == "running"}


def _refuse_unmerged(repo: Repo, probe_id: str, tracker: Tracker) -> None:
    """A completed probe's branch holds only its generated results; one not merged into
    the base yet is refused rather than deleted, so nothing is lost without the user's word."""
    name = branch(probe_id)
    head = git.head_commit(repo.root, f"refs/heads/{name}")
    base = git.head_commit(repo.root, f"refs/heads/{tracker.base_branch}")
    unmerged = head is not None and base is not None and not git.is_ancestor(repo.root, head, base)
    if unmerged and tracker.lanes[probe_id].status == "completed":
        raise UserError(
            f"probe {probe_id!r} has results not merged yet on {name}; run "
            f"`orchestree merge` first (or `git branch -D {name}` to discard them)"
        )


def _forget_probe(repo: Repo, probe_id: str) -> None:
    """Drop a finished probe lane, its worktree and its branch, so it can run afresh."""
    root, name = repo.root, branch(probe_id)
    path = repo.layout.worktree(probe_id)
    if path.exists():
        git.worktree_remove(root, path, force=True)
    if git.head_commit(root, f"refs/heads/{name}") is not None:
        git.branch_delete(root, name, force=True)

    def change(t: Tracker) -> None:
        t.lanes.pop(probe_id, None)
        t.agents.pop(agent_name(probe_id), None)

    repo.store.update(change, "probe-reset", lane=probe_id)


def _check_base_worktree(repo: Repo) -> None:
    """The merge's precondition, checked before the probes run rather than after."""
    base = repo.store.read().base_branch
    merger.base_worktree_problems(
        repo.root, base, "run the probes again (their results are merged there)"
    )


@dataclass
class ProbesResult:
    run: Summary
    merge: MergeReport | None
    failed: dict[str, str] = field(default_factory=dict)  # probe -> why


def run_probes(repo: Repo, max_parallel: int | None, report: Reporter) -> ProbesResult:
    doctor.require(repo.config, repo.root, "probes")
    _check_base_worktree(repo)
    report(describe_probes(repo))
    ids = register_probes(repo)
    run = execution.execute(repo, set(ids), max_parallel, report, kind="probe")
    tracker = repo.store.read()
    failed = {k: tracker.lanes[k].error or tracker.lanes[k].status for k in ids
              if tracker.lanes[k].status not in ("completed", "merged")}  # fmt: skip
    merged = None
    if any(tracker.lanes[k].status == "completed" for k in ids):
        merged = merger.merge(repo, MergeScope(kind="probe"), merger.ReportWatch(report))
        for line in merger.describe(merged, lanes=False):
            report(line)
    return ProbesResult(run, merged, failed)


def plan_lanes(repo: Repo, group_by: str | None, report: Reporter) -> Plan:
    """The plan: the planner agent's when `[plan] agent` is set, else the built-in one's."""
    agent = repo.config.plan.agent
    if agent is None:
        return make_plan(repo, group_by, report)
    if group_by is not None:
        raise UserError(
            f"--group-by is for the built-in planner; the planner agent {agent!r} "
            "([plan] agent in orchestree.toml) groups as it sees fit"
        )
    return plan_by_agent(repo, agent, report)


def _probe_results(repo: Repo) -> list[ProbeResult]:
    results, problems = planner.load_results(repo.layout.generated)
    if not results:
        why = f" ({'; '.join(problems)})" if problems else ""
        raise UserError(
            f"no probe results under {repo.layout.generated}{why}; run `orchestree probes` first"
        )
    return results


def make_plan(repo: Repo, group_by: str | None = None, report: Reporter | None = None) -> Plan:
    """The built-in planner's plan from every probe's results in the base worktree.

    A gap's agent is kept only when its probe's `allow_agents` lists it (docs/trust.md);
    otherwise its lane gets the default agent, and `report` hears so."""
    results = [_allowed_gaps(repo, r, report) for r in _probe_results(repo)]
    plan = planner.make_plan(
        results,
        default_agent=repo.config.defaults.agent,
        group_by=group_by or repo.config.plan.group_by,  # type: ignore[arg-type]
        reserved=_probe_ids(repo) | {r.probe for r in results},
    )
    check_plan(repo, plan, "the plan")
    return plan


def _allowed_gaps(repo: Repo, result: ProbeResult, report: Reporter | None) -> ProbeResult:
    """`result` without the agents its probe may not choose (the gaps' tasks stay)."""
    cfg = configured_probes(repo).get(result.probe)
    allowed = {repo.config.defaults.agent, *(cfg.allow_agents if cfg else [])}
    gaps = []
    for gap in result.gaps:
        if gap.agent is not None and gap.agent not in allowed:
            if report is not None:
                report(
                    f"plan: probe {result.probe!r} asked for agent {gap.agent!r} for gap "
                    f"{gap.id!r}; [probes.{result.probe}] allow_agents in orchestree.toml does "
                    f"not list it, so that lane gets {repo.config.defaults.agent!r}"
                )
            gaps.append(gap.model_copy(update={"agent": None}))
        else:
            gaps.append(gap)
    return result.model_copy(update={"gaps": gaps})


def planner_agents(repo: Repo) -> set[str]:
    """The agents a planner agent's lanes may ask for: the default and `[plan] allow_agents`."""
    return {repo.config.defaults.agent, *repo.config.plan.allow_agents}


def plan_by_agent(repo: Repo, agent: str, report: Reporter) -> Plan:
    """Run the planner agent as a probe lane and read the plan it wrote in its worktree.

    The lane is then dropped with its worktree and branch: its one product is the plan,
    which `register_plan` writes into the base worktree as the built-in planner's is
    (a completed probe lane left behind would be merged). A failed one stays on record.
    """
    sources = [r.probe for r in _probe_results(repo)]
    lane_id = planner_agent.PLANNER_LANE
    old = repo.store.read().lanes.get(lane_id)
    if old is not None:
        if not planner_agent.is_planner_lane(old):
            raise UserError(
                f"lane {lane_id!r} exists and is not the planner agent's; the planner "
                "agent's lane needs that id: rename that lane or probe"
            )
        _forget_probe(repo, lane_id)
    config = repo.config
    lane = planner_agent.planner_lane(agent, sources, planner_agents(repo), config.defaults.agent)
    lane_ops.add_lanes(repo, {lane_id: lane})
    if execution.execute(repo, {lane_id}, None, report, kind="probe").interrupted:
        raise KeyboardInterrupt  # Ctrl-C: the lane is cancelled; exit 130 as anywhere
    done = repo.store.read().lanes[lane_id]
    if done.status != "completed":
        log = repo.layout.rel(repo.layout.log(lane_id))
        raise UserError(
            f"the planner agent {agent!r} gave no usable plan: {done.error or done.status} "
            f"(log: {log}); nothing was registered"
        )
    try:
        plan = _committed_plan(repo, lane_id, done.head_commit)
    finally:
        _forget_probe(repo, lane_id)
    where = f"the plan of the planner agent {agent!r}"
    check_plan(repo, plan, where)
    for lane_id, planned in plan.lanes.items():  # an agent's text chooses no other agent
        if planned.agent is not None and planned.agent not in planner_agents(repo):
            raise UserError(
                f"{where}: lane {lane_id!r} asks for agent {planned.agent!r}, which [plan] "
                "allow_agents in orchestree.toml does not list; nothing was registered"
            )
    return plan


def _committed_plan(repo: Repo, lane_id: str, head: str | None) -> Plan:
    """The plan on the planner lane's branch (it may have run on another machine)."""
    text = git.file_at(repo.root, head, PLAN_FILE) if head else None
    if text is None:
        raise UserError(f"the planner agent's branch {branch(lane_id)} holds no {PLAN_FILE}")
    copy = repo.layout.orch / "runs" / f"{lane_id}.execution_plan.json"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text, encoding="utf-8")
    return planner.read_plan(copy)


def _probe_ids(repo: Repo) -> set[str]:
    """Ids a plan lane may not take: the probes' lanes, run or configured."""
    lanes = repo.store.read().lanes
    return {k for k, v in lanes.items() if v.kind == "probe"} | set(configured_probes(repo))


def check_plan(repo: Repo, plan: Plan, where: str) -> None:
    """What a plan may not say, here: a lane of another kind, a probe's id, an agent
    this repository does not know. (Ids, dependencies and cycles: `Plan` itself.)"""
    probe_ids = _probe_ids(repo)
    for lane_id, lane in plan.lanes.items():
        if lane.kind != "lane":
            raise UserError(f"{where}: lane {lane_id!r} has kind {lane.kind!r}; plan lanes are "
                            "of kind 'lane'")  # fmt: skip
        if lane_id in probe_ids:
            raise UserError(f"{where}: lane {lane_id!r} is a probe's id; rename the lane")
        if lane.agent is not None:
            repo.config.check_agent(lane.agent, f"{where}: lane {lane_id!r}")


def register_plan(repo: Repo, plan: Plan, where: str = "the plan") -> list[str]:
    """Register the plan's lanes (pending ones are redefined), then write the plan file.

    Refused as a whole, before anything changes, when `check_plan` or `add_lanes` refuse.
    """
    check_plan(repo, plan, where)
    tracker = repo.store.read()
    lanes = {k: v.model_dump(exclude_defaults=True) for k, v in plan.lanes.items()}
    started = [k for k in lanes if k in tracker.lanes and tracker.lanes[k].status != "pending"]
    for lane_id in started:  # a lane that ran already keeps its record
        lanes.pop(lane_id)
    added = lane_ops.add_lanes(repo, lanes, replace=True) if lanes else []
    planner.write_plan(repo.layout.plan_file, plan)

    def change(t: Tracker) -> None:
        t.phase = 2

    repo.store.update(change, "plan", lanes=added)
    return added


@dataclass
class FullResult:
    probes: ProbesResult
    plan: list[str]
    run: Summary | None
    merge: MergeReport | None
    plan_error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.run is not None and self.run.interrupted:
            return 130
        bad = bool(self.probes.failed or self.plan_error)
        bad = bad or (self.run is not None and self.run.exit_code != 0)
        return 1 if bad or (self.merge is not None and self.merge.exit_code) else 0


def full(
    path: Path,
    max_parallel: int | None,
    report: Reporter,
    group_by: str | None = None,
    hard: bool = False,
) -> tuple[Repo, FullResult]:
    """init if needed → probes → plan → execute → merge.

    Every program the run will need (agents, verify, setup, test commands, the remote)
    is checked first: a missing one refuses the run before init or any probe."""
    root = find_root(path)
    doctor.require(load_config(root), root, "full")
    repo = init_repo(path).repo
    probed = run_probes(repo, max_parallel, report)
    if probed.run.interrupted:
        return repo, FullResult(probed, [], None, None)
    try:
        plan = plan_lanes(repo, group_by, report)
    except UserError as exc:
        report(f"plan: {exc}")
        return repo, FullResult(probed, [], None, None, plan_error=str(exc))
    added = register_plan(repo, plan)
    report(f"plan: {len(plan.lanes)} lane(s) from {', '.join(plan.sources) or 'no probe'}")
    if not plan.lanes:
        return repo, FullResult(probed, [], None, None)
    run = execution.execute(repo, set(plan.lanes), max_parallel, report, hard=hard)
    if run.interrupted:
        return repo, FullResult(probed, added, run, None)
    from orchestree import rework  # merge, rework, merge again (DESIGN.md §13)

    merged = rework.merge_until_done(repo, watch=merger.ReportWatch(report), report=report)
    for line in merger.describe(merged, lanes=False):
        report(line)
    return repo, FullResult(probed, added, run, merged)
