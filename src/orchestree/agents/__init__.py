"""Agent presets: which argv and environment run a lane's agent, and what its output
says afterwards (DESIGN.md §5). Presets are data behind the `AgentPreset` protocol,
registered in `REGISTRY`; a new CLI is a small `Preset` subclass and one line there.

The launcher's use, per attempt (executors/launch.py)::

    preset = preset_for(config, lane)
    ctx = LaunchContext(lane_id, lane, worktree, branch, tracker, prompt_file)
    prompt = build_prompt(ctx)          # write it to ctx.prompt_file too
    inv = preset.invocation(ctx, prompt)
    # spawn inv.argv in ctx.worktree, env=git.git_env(inv.env), stdin /dev/null;
    # per output line: preset.progress_from_line(line), preset.fatal_from_line(line)
    outcome = preset.classify(log_text, exit_code)
"""

from __future__ import annotations

import shutil

from orchestree.agents.aider import Aider
from orchestree.agents.base import (
    PARSER_COMPLAINT,
    AgentPreset,
    Custom,
    Invocation,
    LaunchContext,
    Outcome,
    Preset,
    agent_env,
)
from orchestree.agents.claude import Claude
from orchestree.agents.codex import Codex
from orchestree.agents.gemini import Gemini
from orchestree.agents.prompt import build_prompt
from orchestree.agents.shell import Shell
from orchestree.config import CONFIG_FILE, AgentConfig, Config
from orchestree.errors import UserError
from orchestree.layout import AGENT_EXCLUDES
from orchestree.models import LaneInput

__all__ = [
    "AGENT_EXCLUDES",
    "PARSER_COMPLAINT",
    "REGISTRY",
    "AgentPreset",
    "Invocation",
    "LaunchContext",
    "Outcome",
    "agent_env",
    "agent_warnings",
    "build_prompt",
    "check_available",
    "get_agent",
    "preset_for",
]

REGISTRY: dict[str, type[Preset]] = {
    "claude": Claude,
    "codex": Codex,
    "aider": Aider,
    "gemini": Gemini,
    "shell": Shell,
}

# Presets without a permission switch of their own.
_NO_PERMISSION_MODE = frozenset({"aider", "shell"})


def get_agent(name: str, config: Config, where: str = "orchestree") -> AgentPreset:
    """The preset or custom agent called `name`, bound to its `[agents.NAME]` settings.
    `where` names who asked for it in the error (e.g. "lane 'db-projection'")."""
    config.check_agent(name, where)
    settings = config.agents.get(name, AgentConfig())
    if settings.permission_mode is not None and name in _NO_PERMISSION_MODE:
        raise UserError(
            f"{CONFIG_FILE}: [agents.{name}] permission_mode does not apply to {name!r}; remove it"
        )
    preset = REGISTRY.get(name, Custom)
    return preset(name, settings)


def preset_for(config: Config, lane: LaneInput, where: str = "orchestree") -> AgentPreset:
    """The preset that runs `lane`: its own agent, else `[defaults] agent`."""
    return get_agent(config.for_lane(lane).agent, config, where)


def check_available(name: str, config: Config, path: str | None = None) -> None:
    """Raise `UserError` naming the agent and how to install or configure it when its
    program is not found (`path` defaults to $PATH)."""
    preset = get_agent(name, config)
    program = preset.executable
    if shutil.which(program, path=path) is None:
        raise UserError(
            f"agent {name!r}: program {program!r} not found on PATH; {preset.install_hint}"
        )


def agent_warnings(names: set[str], config: Config, path: str | None = None) -> list[str]:
    """What to tell the user once before lanes of these agents start."""
    return [w for name in sorted(names) for w in get_agent(name, config).warnings(path)]
