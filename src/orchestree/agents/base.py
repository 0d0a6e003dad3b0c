"""What every agent preset is: the contract the launcher calls, and a base that fills it.

A preset answers two questions for the launcher: "which argv and environment for this
lane?" (`invocation`) and, after the agent exits, "did it really succeed, and what did
it say?" (`classify`). Presets are data (a program, its options, hints) plus the few
lines that read their CLI's own output; see DESIGN.md §5.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from orchestree import git
from orchestree.config import AgentConfig
from orchestree.layout import agent_name, results_dir

if TYPE_CHECKING:
    from orchestree.models import Lane

# What the real CLIs' argument parsers print for an option they do not know:
# claude "error: unknown option", gemini "Unknown argument", aider "unrecognized
# arguments", codex "unexpected argument" (tests/agents/ checks each).
PARSER_COMPLAINT = re.compile(
    r"unknown option|unknown argument|unrecognized argument|unexpected argument", re.IGNORECASE
)
_PLACEHOLDER = re.compile(r"\{(prompt|prompt_file|lane|worktree|branch|tracker)\}")


@dataclass(frozen=True)
class LaunchContext:
    """Where and for what one attempt of a lane runs. Paths are absolute."""

    lane_id: str
    lane: Lane
    worktree: Path
    branch: str
    tracker: Path
    prompt_file: Path
    # False when the repository tracks its own `access_tracker.py` (then the worktree
    # has no copy of orchestree's at its root; DESIGN.md §5).
    helper_in_worktree: bool = True
    # True when the agent runs inside orchestree's sandbox (`[sandbox] kind = "bwrap"`):
    # a CLI with a sandbox of its own is told not to nest one (Codex).
    sandboxed: bool = False

    @property
    def helper_command(self) -> str:
        """The shell words that run the tracker helper: always orchestree's read-only
        copy beside the tracker, outside the worktree, by its absolute path. The Claude
        preset pre-approves exactly this, and the agent cannot edit that file (it can
        edit the seed's copy at its worktree root, so that one is never pre-approved)."""
        return f"python3 {shlex.quote(str(self.tracker.parent / 'access_tracker.py'))}"


@dataclass(frozen=True)
class Invocation:
    """The argv to run (never through a shell) and the variables to add to the
    environment. The launcher merges `env` over its own with `git.git_env(env)`."""

    argv: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class Outcome:
    """What the agent's own output says about its run, read after it exited.

    `ok` False means the lane failed, whatever the exit code; `error` is the agent's
    own message. `auth_failure` means no retry: hold the agent's other lanes and show
    the preset's `login_hint` once."""

    ok: bool
    error: str | None = None
    auth_failure: bool = False
    session_id: str | None = None
    num_turns: int | None = None
    cost_usd: float | None = None
    # Token counts the CLI reported (model, "" when it does not name one → (input,
    # output)), for a CLI that reports no cost: costs.py prices them.
    tokens: dict[str, tuple[int, int]] | None = None


class AgentPreset(Protocol):
    """The contract the launcher and the execute phase use; `Preset` below implements it."""

    name: str

    @property
    def executable(self) -> str: ...
    @property
    def install_hint(self) -> str: ...
    @property
    def login_hint(self) -> str: ...
    @property
    def writable_folders(self) -> list[str]: ...
    @property
    def memory_estimate_mb(self) -> int: ...
    def invocation(self, ctx: LaunchContext, prompt: str) -> Invocation: ...
    def classify(self, output: str, exit_code: int) -> Outcome: ...
    def progress_from_line(self, line: str) -> str | None: ...
    def fatal_from_line(self, line: str) -> str | None: ...
    def warnings(self, path: str | None = None) -> list[str]: ...


def agent_env(ctx: LaunchContext) -> dict[str, str]:
    """The variables every agent gets (DESIGN.md §5), auto-gc off for its git calls."""
    return {
        "ORCHESTREE_TRACKER": str(ctx.tracker.absolute()),
        "ORCHESTREE_LANE": ctx.lane_id,
        "ORCHESTREE_AGENT": agent_name(ctx.lane_id),
        "ORCHESTREE_BRANCH": ctx.branch,
        "ORCHESTREE_WORKTREE": str(ctx.worktree),
        "ORCHESTREE_RESULTS_DIR": results_dir(ctx.lane_id),
        "ORCHESTREE_PROMPT_FILE": str(ctx.prompt_file),
        **git.config_env(git.NO_GC),
    }


def fill(template: str, ctx: LaunchContext, prompt: str) -> str:
    """Replace the known placeholders; any other braces (JSON, say) stay as written."""
    values = {
        "prompt": prompt,
        "prompt_file": str(ctx.prompt_file),
        "lane": ctx.lane_id,
        "worktree": str(ctx.worktree),
        "branch": ctx.branch,
        "tracker": str(ctx.tracker.absolute()),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def last_line(output: str) -> str | None:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else None


def json_objects(output: str) -> list[dict[str, Any]]:
    """Every JSON object that starts a line, one-line (JSONL events) or pretty-printed."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    end = 0
    for match in re.finditer(r"^[ \t]*\{", output, re.MULTILINE):
        start = output.index("{", match.start())
        if start < end:
            continue
        try:
            obj, end = decoder.raw_decode(output, start)
        except ValueError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
    return found


def by_exit_code(output: str, exit_code: int) -> Outcome:
    """The fallback for output with nothing structured: the exit code decides, and the
    message is an argument-parser complaint if there is one, else the last line."""
    if exit_code == 0:
        return Outcome(ok=True)
    lines = output.splitlines()
    said = next((ln.strip() for ln in lines if PARSER_COMPLAINT.search(ln)), None)
    said = said or last_line(output)
    return Outcome(ok=False, error=f"exited with code {exit_code}" + (f": {said}" if said else ""))


@dataclass
class Preset:
    """A preset bound to its `[agents.NAME]` settings. Subclasses set the class data
    and override `options` (and `classify` where the CLI's output says more)."""

    name: str
    config: AgentConfig = field(default_factory=AgentConfig)

    program: ClassVar[str] = ""
    install: ClassVar[str] = ""  # how to install `program`
    login: ClassVar[str] = ""  # how to log in or which key to set
    extra_env: ClassVar[Mapping[str, str]] = {}
    # Inside the sandbox: the folders the CLI writes its config, sessions and caches to
    # (besides the worktree; `~` is the home folder). Checked with each real CLI.
    writable: ClassVar[tuple[str, ...]] = ()
    # A documented guess of one running agent's resident memory, for admission.
    memory_mb: ClassVar[int] = 300
    # The words just before the prompt (`-p`, `--message`, `--`): after them the CLI
    # reads the prompt as the prompt, even one that starts with a dash.
    prompt_option: ClassVar[tuple[str, ...]] = ()

    @property
    def writable_folders(self) -> list[str]:
        """What the preset declares plus `[agents.NAME] writable`."""
        return [*self.writable, *self.config.writable]

    @property
    def memory_estimate_mb(self) -> int:
        """`[agents.NAME] memory_mb`, else the preset's estimate."""
        return self.config.memory_mb if self.config.memory_mb is not None else self.memory_mb

    @property
    def executable(self) -> str:
        return self.config.command[0] if self.config.command else self.program

    @property
    def install_hint(self) -> str:
        where = f"[agents.{self.name}] command in orchestree.toml"
        return f"{self.install}, or set {where}" if self.install else f"install it, or fix {where}"

    @property
    def login_hint(self) -> str:
        return self.login or f"see the documentation of {self.executable!r} for how to log in"

    def options(self, ctx: LaunchContext) -> list[str]:
        """Options before the user's `args`; the prompt comes after both."""
        return []

    def prompt_args(self, prompt: str) -> list[str]:
        return [*self.prompt_option, prompt]

    def model_args(self) -> list[str]:
        """`--model M` for `[agents.NAME] model = "M"`: every CLI we drive spells it so."""
        return ["--model", self.config.model] if self.config.model else []

    def arguments(self, ctx: LaunchContext, prompt: str) -> list[str]:
        return [*self.options(ctx), *self.config.args, *self.prompt_args(prompt)]

    def invocation(self, ctx: LaunchContext, prompt: str) -> Invocation:
        if self.config.command:
            argv = [fill(arg, ctx, prompt) for arg in self.config.command]
            argv += self.config.args
        else:
            argv = [self.program, *self.arguments(ctx, prompt)]
        env = {**agent_env(ctx), **self.extra_env}
        env.update({key: fill(value, ctx, prompt) for key, value in self.config.env.items()})
        return Invocation(argv=argv, env=env)

    def classify(self, output: str, exit_code: int) -> Outcome:
        return by_exit_code(output, exit_code)

    def progress_from_line(self, line: str) -> str | None:
        return None

    def fatal_from_line(self, line: str) -> str | None:
        """A line after which waiting is pointless (the agent waits for a person):
        the supervisor should end the agent now, then `classify` its output."""
        return None

    def warnings(self, path: str | None = None) -> list[str]:
        """Things to tell the user once, before any lane of this agent starts."""
        return []


class Custom(Preset):
    """`[agents.NAME] command = [...]`: its exit code decides."""
