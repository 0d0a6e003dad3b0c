"""`orchestree.toml` → Config (DESIGN.md §10). Every key has a default.

An unknown key, a wrong type or an unknown agent is an error naming the key and the
file, before anything runs.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestree import layout
from orchestree.errors import UserError
from orchestree.fastpath import Settings, remember_valid_config

if TYPE_CHECKING:
    from orchestree.models import LaneInput

CONFIG_FILE = layout.CONFIG_FILE  # kept in `layout`, which pydantic-free `init` reads
PRESETS = ("claude", "codex", "aider", "gemini", "shell")


class _Section(BaseModel):
    # Strict: `max_parallel = "4"` is a mistake to name, not a number to guess at; and
    # `inf`/`nan` (valid TOML) are no timeout or grace anyone means.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Defaults(_Section):
    agent: str = layout.DEFAULT_AGENT
    max_parallel: int = Field(default=4, ge=1, le=256)
    timeout_s: float = Field(default=3600, gt=0)
    max_attempts: int = Field(default=1, ge=1)
    kill_grace_s: float = Field(default=5.0, ge=0)
    base_branch: str | None = None
    # The four built-in probes run beside the configured ones unless this is false.
    builtin_probes: bool = True
    # Admission by memory (DESIGN.md §15): a lane starts only while MemAvailable minus
    # the running lanes' `memory_mb` estimates leaves this much; 0 turns it off.
    min_free_mb: int = Field(default=0, ge=0)
    # Run budgets (limits.py): the run's cost (the sum the agents report, or estimate
    # from [prices]) and its wall-clock time since its first lane started. Once either
    # is reached, no new lane or rework starts (`execute --hard` also cancels the
    # running ones, keeping their work). None: no limit.
    budget_usd: float | None = Field(default=None, gt=0)
    deadline: float | None = Field(default=None, gt=0)  # seconds; "2h", "30m", "90s" too

    @field_validator("deadline", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """ "2h", "30m", "1h30m", "90s" or "90" → seconds; ValueError naming the forms."""
    compact = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", compact):
        return float(compact)
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f'{text!r} is not a duration; write e.g. "2h", "30m", "1h30m" or 90')
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


class AgentConfig(_Section):
    """A custom agent, or overrides of a preset of the same name."""

    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    permission_mode: str | None = None
    model: str | None = None
    args: list[str] = Field(default_factory=list)
    # Folders the agent may write inside the sandbox besides its worktree (its config
    # and caches; `~` is the home folder), added to what its preset declares.
    writable: list[str] = Field(default_factory=list)
    # An estimate of one running agent's memory, for admission (presets have defaults).
    memory_mb: int | None = Field(default=None, ge=0)

    @field_validator("writable")
    @classmethod
    def _places(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not (entry.startswith(("/", "~/")) and ".." not in Path(entry).parts):
                raise ValueError(f"{entry!r} must be an absolute path or start with ~/")
        return value

    @field_validator("command")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name a program")
        return value


class WorktreeConfig(_Section):
    root: str = ".worktrees"
    setup: str = ""
    ports: tuple[int, int] = (20000, 20999)
    # Folders `setup` makes that every worktree gets as a copy-on-write or hard-linked
    # copy of one prepared tree, instead of running `setup` again (worktree_share.py).
    share: list[str] = Field(default_factory=list)
    # Files of the base commit (glob pathspecs: lockfiles) whose contents alone decide
    # `share`'s template; unset: the whole base commit does, so every merge rebuilds it.
    share_key: list[str] = Field(default_factory=list)
    # Spare worktrees made ahead of time, set up and ready to claim (worktree_pool.py).
    pool: int = 0

    @field_validator("ports", mode="before")
    @classmethod
    def _pair(cls, value: object) -> object:
        # TOML has arrays, not tuples; strict mode would refuse every [low, high].
        return tuple(value) if isinstance(value, list) else value

    @field_validator("share")
    @classmethod
    def _folders(cls, value: list[str]) -> list[str]:
        for folder in value:
            parts = Path(folder).parts
            if not parts or Path(folder).is_absolute() or ".." in parts or parts[0] == ".git":
                raise ValueError(f"{folder!r} must be a folder inside the worktree")
        return value

    @field_validator("share_key")
    @classmethod
    def _key_files(cls, value: list[str]) -> list[str]:
        for pattern in value:
            parts = Path(pattern).parts
            if (not parts or Path(pattern).is_absolute() or ".." in parts
                    or pattern.startswith(":") or any(c in pattern for c in "\0\n")):  # fmt: skip
                raise ValueError(
                    f"{pattern!r} must be a file or glob inside the repository, such as "
                    '"package-lock.json" or "**/requirements*.txt"'
                )
        return value

    @field_validator("pool")
    @classmethod
    def _pool_size(cls, value: int) -> int:
        if not 0 <= value <= 64:
            raise ValueError("must be a number of spare worktrees from 0 (off) to 64")
        return value

    @field_validator("ports")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1024 <= low <= high <= 65535:
            raise ValueError("must be [low, high] with 1024 <= low <= high <= 65535")
        return value


class ProbeConfig(_Section):
    builtin: str | None = None
    agent: str | None = None
    prompt: str | None = None
    command: str | None = None
    priority: Literal["high", "medium", "low"] = "medium"
    timeout_s: float | None = Field(default=None, gt=0)
    # Agents this probe's gaps may ask for besides [defaults] agent (docs/trust.md): a
    # probe's output is an agent's text, so by default it carries tasks, never an agent.
    allow_agents: list[str] = Field(default_factory=list)


class PlanConfig(_Section):
    agent: str | None = None
    group_by: Literal["gap", "file", "probe"] = "gap"
    # Agents the planner agent's lanes may ask for besides [defaults] agent.
    allow_agents: list[str] = Field(default_factory=list)


class MergeConfig(_Section):
    verify: str = ""
    verify_timeout_s: float = Field(default=1800, gt=0)
    # What `merge` does with a lane that conflicts or fails verify (DESIGN.md §13):
    # report it (the default), send it back to its agent (`rework.py`), or, for a
    # deterministic agent, run it again from the new base (`rerun`).
    on_conflict: Literal["report", "rework", "rerun"] = "report"
    on_verify_fail: Literal["report", "rework"] = "report"
    max_rework: int = Field(default=2, ge=0, le=20)  # per lane, over the whole run
    # Lanes merged into the candidate before one verify run checks them all; a failing
    # run is bisected to the lane that breaks it (batch.py). 1: verify lane by lane.
    batch: int = Field(default=8, ge=1, le=1024)


class RadarConfig(_Section):
    # How often `execute` looks for conflicts between running lanes (and after each
    # lane finishes); 0 turns the radar off during execute (`orchestree radar` still works).
    every_s: float = Field(default=5.0, ge=0)


class MonitorConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=5555, ge=1, le=65535)


class SandboxConfig(_Section):
    """Where a lane's agent may write (DESIGN.md §15, docs/trust.md)."""

    kind: Literal["none", "bwrap"] = "none"
    network: bool = True


class NotifyConfig(_Section):
    """Where the run's events go (notify.py); nothing is sent when all are unset."""

    command: str = ""  # a program (split like a shell would, never run by one) + args
    shell: bool = False  # run `command` with `sh -c` (pipes, redirections)
    webhook: str = ""  # POST the event as JSON to this http(s) URL
    # The name of an environment variable whose value is sent as X-Orchestree-Secret:
    # the secret itself never sits in orchestree.toml.
    webhook_secret_env: str = ""
    desktop: bool = False  # `notify-send`, where it is installed
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value

    @field_validator("command")
    @classmethod
    def _words(cls, value: str) -> str:
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} cannot be split into words ({exc})") from None
        return value


class PriceConfig(_Section):
    """USD per million tokens, for agents that report tokens but no cost (costs.py)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class ExecutorConfig(_Section):
    kind: Literal["local", "dask"] = "local"
    scheduler: str = ""
    workers: int = Field(default=2, ge=1)
    remote: str = "origin"


@dataclass(frozen=True)
class LaneSettings:
    """What one lane runs with: its own settings, else the config's `[defaults]`
    (`Config.for_lane`, the one place that says which wins)."""

    agent: str  # the agent's name: a preset or an `[agents.NAME]`
    timeout_s: float  # one attempt's deadline
    max_attempts: int  # attempts before the lane fails
    sandbox: str  # where its agent may write: "none" or "bwrap"


class Config(_Section):
    defaults: Defaults = Field(default_factory=Defaults)
    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    worktree: WorktreeConfig = Field(default_factory=WorktreeConfig)
    probes: dict[str, ProbeConfig] = Field(default_factory=dict)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    merge: MergeConfig = Field(default_factory=MergeConfig)
    radar: RadarConfig = Field(default_factory=RadarConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    # [prices.<model or agent>]: overrides the built-in table of costs.py.
    prices: dict[str, PriceConfig] = Field(default_factory=dict)

    def for_lane(self, lane: LaneInput) -> LaneSettings:
        """The lane's effective agent, timeout, attempts and sandbox."""
        return LaneSettings(
            agent=lane.agent or self.defaults.agent,
            timeout_s=lane.timeout_s or self.defaults.timeout_s,
            max_attempts=lane.max_attempts or self.defaults.max_attempts,
            sandbox=lane.sandbox or self.sandbox.kind,
        )

    def agent_names(self) -> set[str]:
        return set(PRESETS) | set(self.agents)

    def check_agent(self, name: str, where: str) -> None:
        if name not in self.agent_names():
            known = ", ".join(sorted(self.agent_names()))
            raise UserError(
                f"{where}: agent {name!r} is neither a preset nor defined in "
                f"{CONFIG_FILE} [agents.{name}] (known: {known})"
            )


def load_config(repo_root: Path) -> Config:
    """Read `orchestree.toml` at the repository root; defaults when there is none."""
    path = repo_root / CONFIG_FILE
    if not path.exists():
        return Config()
    text = path.read_bytes()
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc}); fix the file") from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise UserError(
                f"{path}: unknown key {key!r}; remove it or check its spelling"
            ) from None
        raise UserError(f"{path}: key {key!r} {err['msg'].lower()}") from None
    for name, agent in config.agents.items():
        if name not in PRESETS and agent.command is None:
            raise UserError(f"{path}: [agents.{name}] needs `command`, a list of strings")
    config.check_agent(config.defaults.agent, f"{path}: [defaults] agent")
    for probe_id, probe in config.probes.items():
        if probe.agent is not None:
            config.check_agent(probe.agent, f"{path}: [probes.{probe_id}]")
        _check_probe(probe_id, probe, f"{path}: [probes.{probe_id}]")
        for name in probe.allow_agents:
            config.check_agent(name, f"{path}: [probes.{probe_id}] allow_agents")
    if config.plan.agent is not None:
        config.check_agent(config.plan.agent, f"{path}: [plan]")
    for name in config.plan.allow_agents:
        config.check_agent(name, f"{path}: [plan] allow_agents")
    found = Settings(config.worktree.root, config.defaults.agent, frozenset(raw),
                     frozenset(config.agents))  # fmt: skip
    remember_valid_config(repo_root, text, found)
    return config


def _check_probe(probe_id: str, probe: ProbeConfig, where: str) -> None:
    """A probe runs as a lane named by its id: refuse what could not run, before anything does."""
    from orchestree.models import check_lane_id

    try:
        check_lane_id(probe_id)
    except UserError as exc:
        raise UserError(f"{where}: a probe's id is its lane's id, and {exc}") from None
    known = ", ".join(BUILTIN_PROBE_NAMES)
    if probe.builtin is not None:
        check_builtin(probe.builtin, where)
        if probe.agent is not None or probe.prompt is not None:
            raise UserError(f"{where}: give either `builtin` or `agent` and `prompt`, not both")
    elif probe.prompt is None:
        raise UserError(
            f"{where}: needs `builtin` (one of {known}) or `prompt` (and `agent`, "
            "default: [defaults] agent)"
        )


# The built-in probes (`orchestree.probes` holds their code), in the order a run starts them.
BUILTIN_PROBE_NAMES = ("inventory", "markers", "tests", "lint")


def check_builtin(name: str, where: str = "probe") -> str:
    """Refuse a name that is no built-in probe (a UserError naming the known ones)."""
    if name not in BUILTIN_PROBE_NAMES:
        known = ", ".join(BUILTIN_PROBE_NAMES)
        raise UserError(f"{where}: unknown built-in probe {name!r} (known: {known})")
    return name


def probe_set(config: Config) -> dict[str, ProbeConfig]:
    """The probes a run starts: every `[probes.<id>]`, plus each built-in the config
    neither redefines (same id) nor already runs (same `builtin`), unless `[defaults]
    builtin_probes = false`."""
    chosen = dict(config.probes)
    if config.defaults.builtin_probes:
        used = {cfg.builtin for cfg in chosen.values()}
        for name in BUILTIN_PROBE_NAMES:
            if name not in chosen and name not in used:
                chosen[name] = ProbeConfig(builtin=name)
    return chosen
