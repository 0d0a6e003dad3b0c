"""Agent presets (interim: shell and custom commands; the full presets land from dev-agents)."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orchestree import git
from orchestree.config import Config
from orchestree.errors import UserError
from orchestree.layout import results_dir
from orchestree.models import Lane


@dataclass(frozen=True)
class LaunchContext:
    lane_id: str
    lane: Lane
    prompt: str
    prompt_file: Path
    worktree: Path
    branch: str
    tracker: Path


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None
    auth_failure: bool = False
    session_id: str | None = None
    num_turns: int | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class CommandAgent:
    name: str
    command: list[str]
    env: dict[str, str]
    login_hint: str = ""

    def invocation(self, ctx: LaunchContext) -> Invocation:
        values = {
            "prompt": ctx.prompt,
            "prompt_file": str(ctx.prompt_file),
            "lane": ctx.lane_id,
            "worktree": str(ctx.worktree),
            "branch": ctx.branch,
            "tracker": str(ctx.tracker),
        }
        argv = [part.format(**values) for part in self.command]
        return Invocation(argv, dict(self.env))

    def classify(self, output: str, exit_code: int) -> Outcome:
        if exit_code == 0:
            return Outcome(True)
        return Outcome(False, f"{self.name} exited with code {exit_code}")

    def progress_from_line(self, line: str) -> str | None:
        return None


@dataclass(frozen=True)
class ShellAgent(CommandAgent):
    def invocation(self, ctx: LaunchContext) -> Invocation:
        script = " && ".join(f"sh -c {shlex.quote(t)}" for t in ctx.lane.tasks) or "true"
        return Invocation(["sh", "-c", script], dict(self.env))


def get_agent(name: str, config: Config) -> CommandAgent:
    custom = config.agents.get(name)
    if name == "shell":
        return ShellAgent("shell", [], custom.env if custom else {})
    if custom is None or custom.command is None:
        raise UserError(f"agent {name!r} is not available yet in this build")
    return CommandAgent(name, custom.command, custom.env)


def check_available(name: str, config: Config) -> None:
    agent = get_agent(name, config)
    program = agent.command[0] if agent.command else "sh"
    if "{" in program or shutil.which(program) is None:
        raise UserError(
            f"agent {name!r}: program {program!r} is not on PATH; install it, or set "
            f"[agents.{name}] command in orchestree.toml"
        )


def agent_env(ctx: LaunchContext) -> dict[str, str]:
    return {
        "ORCHESTREE_TRACKER": str(ctx.tracker),
        "ORCHESTREE_LANE": ctx.lane_id,
        "ORCHESTREE_AGENT": f"agent-{ctx.lane_id}",
        "ORCHESTREE_BRANCH": ctx.branch,
        "ORCHESTREE_WORKTREE": str(ctx.worktree),
        "ORCHESTREE_RESULTS_DIR": results_dir(ctx.lane_id),
        "ORCHESTREE_PROMPT_FILE": str(ctx.prompt_file),
        **git.config_env(git.NO_GC),
    }


def build_prompt(
    lane_id: str, lane: Lane, worktree: Path, branch: str, tracker: Path, helper: str
) -> str:
    tasks = "\n".join(f"- {t}" for t in lane.tasks) or "- (no tasks listed)"
    return (
        f"You are working on lane {lane_id!r} ({lane.name or lane_id}).\n"
        f"Tasks:\n{tasks}\n\n"
        f"Work only in {worktree} (branch {branch}). Put results under "
        f"{results_dir(lane_id)}/. Commit your work when done.\n"
        f"Report progress: python3 {helper} {tracker} "
        f'\'{{"lanes": {{"{lane_id}": {{"progress": "50% complete"}}}}}}\'\n'
    )


def login_hint(name: str, config: Config) -> str:
    return f"log {name} in, then run `orchestree retry <lane>`"
