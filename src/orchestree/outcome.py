"""What a finished attempt means for its lane, whichever executor ran it: the last
step of a lane's story (executors/attempt.py tells the whole of it).

An exit code alone never says a lane succeeded (DESIGN.md §5): the agent preset reads
its CLI's output for failure signs. Reasons that are not the agent's own exit (a
cancel, a lost worker) decide before the agent's output is read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from orchestree import agents
from orchestree.config import Config
from orchestree.executors.attempt import LaneUpdate, agent_output
from orchestree.models import Lane

_NOT_RUN = {
    "gone": "interrupted: its process is gone (the orchestrator was stopped)",
    "lost": "worker lost: the Dask worker or the lane's supervisor on it died; its agent was ended",
    "abandoned": "worker closing: the Dask worker running it was retired; nothing was pushed",
    "claim-conflict": "claim conflict: another run of this attempt holds its claim",
}


# A verdict is what the agent's output says (an `agents.Outcome`), overruled where the
# attempt did not end as the agent's own exit or its output failed a check.
Verdict = agents.Outcome


_STOPPED = {  # the status says "cancelled"; the error says what stopped the agent
    "cancelled": "its agent was stopped (orchestree cancel or Ctrl-C); worktree kept",
    "interrupted": "its agent was interrupted (Ctrl-C or a signal); worktree kept",
    "parent-died": "its orchestrator or worker went away while it ran",
}


def _from(outcome: agents.Outcome, ok: bool, error: str | None) -> Verdict:
    return dataclasses.replace(outcome, ok=ok, error=error)


def judge(
    config: Config,
    lane: Lane,
    update: LaneUpdate,
    fatal: str | None = None,
    probe_problem: Callable[[], str | None] | None = None,
) -> Verdict:
    """`fatal`: why the orchestrator ended an agent that waited for a person;
    `probe_problem`: checks a probe lane's output once its agent succeeded."""
    reason, code = update.reason or "error", update.exit_code
    agent = agents.preset_for(config, lane)
    output = agent_output(update.output)  # only the agent's words are classified
    if fatal is not None:  # its output decides, else the sign we saw
        said = agent.classify(output, -15 if code is None else int(code))
        return _from(said, False, said.error or fatal)
    if reason == "timeout":
        timeout = config.for_lane(lane).timeout_s
        said = agent.classify(output, -15 if code is None else int(code))
        why = re.sub(r"^exited with code -?\d+:? ?", "", said.error or "")
        why = f": {why}" if why else "; the agent's tree was ended"
        return _from(said, False, f"timed out after {timeout:g} s{why}")
    if reason in _STOPPED:
        return Verdict(False, _STOPPED[reason])
    if reason == "setup-failed":
        return Verdict(False, f"worktree setup failed (exit {code}); see the log")
    if reason in _NOT_RUN:
        detail = _NOT_RUN[reason]
        return Verdict(False, f"{detail} ({update.error})" if update.error else detail)
    if reason != "exited" or code is None:
        return Verdict(False, update.error or "the supervisor failed")
    said = agent.classify(output, int(code))
    problem = said.error
    if said.ok and lane.kind == "probe" and probe_problem is not None:
        problem = probe_problem()
    return _from(said, said.ok and problem is None, problem)


def probe_output_problem(path: Path) -> str | None:
    """Why a probe's output is unusable (missing, not JSON, not the schema), or None."""
    from orchestree.probes import ProbeOutputError, load_probe_output

    try:
        load_probe_output(path)
    except ProbeOutputError as exc:
        return str(exc)
    return None


def plan_output_problem(path: Path) -> str | None:
    """Why a planner agent's plan is unusable (missing, not JSON, not a plan, a cycle)."""
    from orchestree.errors import UserError
    from orchestree.planner import read_plan

    if not path.is_file():
        return f"{path}: missing; the planner agent wrote no plan"
    try:
        read_plan(path)
    except UserError as exc:
        return str(exc)
    return None
