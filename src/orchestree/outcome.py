"""What a finished attempt means for its lane, whichever executor ran it.

An exit code alone never says a lane succeeded (DESIGN.md §5): the agent preset reads
its CLI's output for failure signs. Reasons that are not the agent's own exit (a
timeout, a cancel, a lost worker) decide before the agent's output is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestree import agents
from orchestree.config import Config
from orchestree.executors import LaneUpdate
from orchestree.models import Lane

_NOT_RUN = {
    "gone": "interrupted: its process is gone (the orchestrator was stopped)",
    "lost": "worker lost: the Dask worker running it died; its agent was ended",
    "abandoned": "worker closing: the Dask worker running it was retired; nothing was pushed",
    "claim-conflict": "claim conflict: another run of this attempt holds its claim",
}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    error: str | None = None
    auth_failure: bool = False
    session_id: str | None = None
    num_turns: int | None = None
    cost_usd: float | None = None


def judge(config: Config, lane: Lane, update: LaneUpdate) -> Verdict:
    reason, code = update.reason or "error", update.exit_code
    if reason == "timeout":
        timeout = lane.timeout_s or config.defaults.timeout_s
        return Verdict(False, f"timed out after {timeout:g} s; the agent's tree was ended")
    if reason in ("cancelled", "interrupted", "parent-died"):
        return Verdict(False, f"cancelled ({reason})")
    if reason == "setup-failed":
        return Verdict(False, f"worktree setup failed (exit {code}); see the log")
    if reason in _NOT_RUN:
        detail = _NOT_RUN[reason]
        return Verdict(False, f"{detail} ({update.error})" if update.error else detail)
    if reason != "exited" or code is None:
        return Verdict(False, update.error or "the supervisor failed")
    agent = agents.get_agent(lane.agent or config.defaults.agent, config)
    outcome = agent.classify(update.output, code)
    return Verdict(
        outcome.ok,
        outcome.error,
        outcome.auth_failure,
        outcome.session_id,
        outcome.num_turns,
        outcome.cost_usd,
    )
