"""Validated types for the tracker and the lane state machine (DESIGN.md §3).

The tracker keeps the seed's shape (`version`, `phase`, `status`, `agents`, `lanes`)
and adds fields; nothing of the seed is renamed. Every field is validated except a
lane's `progress` and `data`, which belong to the agent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from orchestree.access_tracker import (
    AGENT_STATUSES,
    ENDED,
    LANE_TRANSITIONS,
    MERGE_DECIDED,
    MERGEABLE,
    PHASES,
    SUCCEEDED,
    UNSUCCESSFUL,
    agent_field_problem,
    now_iso,
)
from orchestree.errors import UserError
from orchestree.lanegraph import LANE_ID as _LANE_ID
from orchestree.lanegraph import check_graph, check_lane_id
from orchestree.statusview import RADAR_BASE, describe_finding

__all__ = [
    "AGENT_STATUSES",
    "ENDED",
    "LANE_STATUSES",
    "LANE_TRANSITIONS",
    "MERGEABLE",
    "MERGE_DECIDED",
    "PHASES",
    "PRIORITY_RANK",
    "RADAR_BASE",
    "SUCCEEDED",
    "TRACKER_VERSION",
    "UNSUCCESSFUL",
    "Agent",
    "Lane",
    "LaneInput",
    "LaneMerge",
    "Tracker",
    "check_graph",
    "check_lane_id",
    "describe_finding",
    "describe_validation_error",
]

TRACKER_VERSION = "1.0.0"

LaneStatus = Literal[
    "pending",
    "running",
    "completed",
    "failed",
    "cancelled",
    "blocked",
    "merged",
    "conflict",
    "verify_failed",
]
AgentStatus = Literal["created", "running", "completed", "failed"]
Priority = Literal["high", "medium", "low"]
LaneKind = Literal["lane", "probe"]
TrackerStatus = Literal["initialised", "running", "completed", "failed", "cancelled"]
MergeStatus = Literal["merged", "conflict", "verify_failed", "skipped"]

PRIORITY_RANK: dict[str, int] = {"high": 0, "medium": 1, "low": 2}
LANE_STATUSES = frozenset(LANE_TRANSITIONS)


class _Strict(BaseModel):
    # NaN and Infinity are not JSON: refused, so /api/status always sends valid JSON.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _agent_field(name: str, value: Any) -> Any:
    """The caps an agent's own fields have (the helper checks the same)."""
    problem = agent_field_problem(name, value)
    if problem:
        raise ValueError(problem)
    return value


class LaneMerge(_Strict):
    status: MergeStatus | None = None
    commit: str | None = None
    conflicts: list[str] = Field(default_factory=list)


ReworkReason = Literal["conflict", "verify", "review", "rerun"]


class LaneRework(_Strict):
    """Why the lane's current attempt is a rework (DESIGN.md §13, `rework.py`).

    `count` is how many reworks the lane has had (bounded by `[merge] max_rework`);
    `base` the base commit merged into the lane branch for a conflict, and `files`
    the files that held conflict markers: the attempt must leave both resolved."""

    reason: ReworkReason
    count: int = Field(default=1, ge=1)
    file: str | None = None  # the details for the agent (ORCHESTREE_REWORK_FILE), relative
    base: str | None = None
    files: list[str] = Field(default_factory=list)


class LaneInput(_Strict):
    """What a user or a plan may say about a lane (the seed's lane JSON, extended)."""

    name: str = ""
    tasks: list[str] = Field(default_factory=list)
    results: list[str] = Field(default_factory=list)
    priority: Priority = "medium"
    parallel: bool = True
    depends_on: list[str] = Field(default_factory=list)
    agent: str | None = None
    kind: LaneKind = "lane"
    prompt: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, ge=1)
    budget_usd: float | None = Field(default=None, gt=0)
    sandbox: Literal["none", "bwrap"] | None = None  # None: [sandbox] kind

    @field_validator("results")
    @classmethod
    def _results(cls, value: list[str]) -> list[str]:
        return list(_agent_field("results", value))

    @field_validator("depends_on")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for dep in value:
            check_lane_id(dep)
        if len(set(value)) != len(value):
            raise ValueError("lists a dependency twice")
        return value


class Lane(LaneInput):
    """A lane as the tracker holds it: the input plus what orchestree recorded."""

    status: LaneStatus = "pending"
    order: int = Field(default=0, ge=0)
    attempts: int = Field(default=0, ge=0)
    progress: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    head_commit: str | None = None
    start_commit: str | None = None
    changed_files: list[str] = Field(default_factory=list)
    no_changes: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    session_id: str | None = None
    num_turns: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    host: str | None = None  # where the lane last ran (a Dask worker's host); None: here
    worker: str | None = None  # the Dask worker's address
    port: int | None = Field(default=None, ge=1, le=65535)
    merge: LaneMerge = Field(default_factory=LaneMerge)
    # Why a pending lane whose dependencies are done has not started ("memory": the
    # running lanes' estimates leave less than [defaults] min_free_mb; "budget" or
    # "deadline": the run's limit is reached, limits.py); None otherwise.
    waiting_for: Literal["memory", "budget", "deadline"] | None = None
    # True when `cost_usd` is (partly) an estimate from token counts and [prices]
    # (costs.py), not a cost the agent's CLI reported.
    cost_estimated: bool = False
    # Refs outside the lanes' own that moved while the sandboxed agent ran, restored.
    refs_restored: list[str] = Field(default_factory=list)
    rework: LaneRework | None = None  # set while (and after) the lane is reworked
    # The agent whose missing login holds this blocked lane (its `error` says how to log
    # in); None for a lane blocked behind a failed dependency.
    held: str | None = None

    @field_validator("progress", "data")
    @classmethod
    def _agent_fields(cls, value: Any, info: ValidationInfo) -> Any:
        return _agent_field(str(info.field_name), value)


class Agent(_Strict):
    worktree: str
    lane: str
    status: AgentStatus = "created"
    branch: str
    agent: str | None = None
    pid: int | None = Field(default=None, ge=1)  # never 0 or a group (-n) to signal
    pid_started: float | None = None  # written by the released version; never trusted
    pid_ticks: int | None = Field(default=None, ge=0)  # start in clock ticks since boot
    boot_id: str | None = None  # the kernel's boot id when `pid` was recorded
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    log: str | None = None
    host: str | None = None
    handle: str | None = None  # the executor's handle of the attempt (see executors/)


class RadarFinding(_Strict):
    """Two lanes, or a lane and the base branch, whose work would conflict (§13)."""

    lanes: list[str] = Field(min_length=2, max_length=2)
    files: list[str] = Field(default_factory=list)
    since: str

    @field_validator("lanes")
    @classmethod
    def _pair(cls, value: list[str]) -> list[str]:
        check_lane_id(value[0])
        if value[1] != RADAR_BASE:
            check_lane_id(value[1])
        if value[0] == value[1]:
            raise ValueError("a radar finding names two different sides")
        return value


StopReason = Literal["budget", "deadline"]


class RunLimits(_Strict):
    """The run's clock and why it stopped starting lanes (limits.py).

    Time is counted on the boot clock (CLOCK_BOOTTIME), which no wall-clock step
    moves: `boot_s` is its reading when this boot's share of the run began and
    `before_s` the run's time on earlier boots; `elapsed_s` is the run's time as last
    recorded (what a reboot keeps)."""

    started_at: str = Field(default_factory=now_iso)  # for people; never compared
    boot_id: str
    boot_s: float = Field(ge=0)
    before_s: float = Field(default=0.0, ge=0)
    elapsed_s: float = Field(default=0.0, ge=0)
    stop: StopReason | None = None
    stop_message: str | None = None  # e.g. "budget $1.02 of $1.00 spent"


class NotifyRecord(_Strict):
    """What notify.py sent (event keys, so each event goes out once across commands)
    and which notifiers failed (each named once)."""

    sent: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class Tracker(_Strict):
    version: str = TRACKER_VERSION
    phase: int = Field(default=0, ge=0, le=4)
    status: TrackerStatus = "initialised"
    repo: str
    base_branch: str
    base_commit: str
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    # The conflict radar's findings: orchestree's alone, like every field but a lane's
    # progress, data and results (the ledger keeps them from being forged).
    radar: list[RadarFinding] = Field(default_factory=list)
    limits: RunLimits | None = None  # set by the first execute (limits.py)
    notify: NotifyRecord | None = None  # set by the first notification (notify.py)
    # Last, in this order: the tracker store serialises what comes before them whole
    # and reuses each unchanged lane's and agent's stored JSON (snapshot.py).
    agents: dict[str, Agent] = Field(default_factory=dict)
    lanes: dict[str, Lane] = Field(default_factory=dict)

    @field_validator("status", mode="before")
    @classmethod
    def _one_spelling(cls, value: object) -> object:
        # Trackers written before the README's spelling was used everywhere.
        return "initialised" if value == "initialized" else value

    @field_validator("lanes")
    @classmethod
    def _lane_ids(cls, value: dict[str, Lane]) -> dict[str, Lane]:
        check_lanes(value)
        return value


def check_lanes(lanes: Mapping[str, LaneInput]) -> None:
    """Every id is a valid lane id and the dependencies form a DAG of known lanes."""
    for lane_id in lanes:
        check_lane_id(lane_id)
    check_graph({k: lane.depends_on for k, lane in lanes.items()})


def describe_validation_error(exc: ValidationError, what: str) -> str:
    """One line for the first problem pydantic found, naming the field."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{what}: unknown field {loc!r}"
    if err["type"] == "value_error" and isinstance(err.get("ctx", {}).get("error"), UserError):
        return str(err["ctx"]["error"])
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict | list) or len(repr(value)) < 60 else "..."
    return f"{what}: field {loc!r} {err['msg'].lower()} (got {shown})"


# --- Probe results and the execution plan (DESIGN.md §7) ---------------------------

PLAN_VERSION = "1.0.0"
_NOT_ID = re.compile(r"[^a-z0-9._-]+")


def lane_id_from(text: str) -> str:
    """A valid lane id made from any text, deterministically (`src/App.py` → `src-app.py`).

    Ids longer than 63 characters keep a prefix and gain a short hash of the whole
    text, so two long texts that share a prefix still get different ids.
    """
    slug = _NOT_ID.sub("-", text.lower())
    slug = re.sub(r"\.{2,}", ".", slug)
    slug = re.sub(r"-{2,}", "-", slug).strip("-._")
    if len(slug) > 63:
        import hashlib  # here, not at the top: this section is appended to the module

        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        slug = f"{slug[:54].rstrip('-._')}-{digest}"
    while slug.endswith(".lock"):
        slug = slug[: -len(".lock")] + "-lock"
    return slug or "gap"


def unique_lane_id(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`, … : the first not in `taken` (which is updated)."""
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        suffix = f"-{n}"
        candidate = base[: 63 - len(suffix)].rstrip("-._") + suffix
    taken.add(candidate)
    return candidate


def _clean_path(raw: str) -> str:
    path = raw.strip().replace("\\", "/")
    if not path:
        raise ValueError("a path may not be empty")
    if path.startswith("/") or re.match(r"^[A-Za-z]:/", path):
        raise ValueError(f"path {raw!r} is absolute; give it relative to the repository root")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"path {raw!r} leaves the repository ('..')")
    return "/".join(parts) or "."


class Gap(BaseModel):
    """One thing a probe found that a lane could fix."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        min_length=1,
        description="Short name; made into a lane id (lowercase letters, digits, '.', '_', "
        "'-') deterministically, and kept unique within the probe.",
    )
    title: str = Field(min_length=1, description="One line saying what is wrong.")
    tasks: list[str] = Field(
        default_factory=list, description="Concrete steps for the agent that fixes it."
    )
    priority: Priority = "medium"
    paths: list[str] = Field(
        default_factory=list,
        description="Files or folders, relative to the repository root, the fix will touch; "
        "'.' is the whole repository. Lanes whose paths overlap run one after the other.",
    )
    agent: str | None = Field(default=None, description="The agent to fix it; default: plan's.")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return lane_id_from(value)

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_clean_path(p) for p in value))


class ProbeResult(BaseModel):
    """`docs/_generated/<probe>/state_probe.json`: what one probe found."""

    model_config = ConfigDict(extra="forbid")

    probe: str = Field(
        description="The probe's id, a lane id.", json_schema_extra={"pattern": _LANE_ID.pattern}
    )
    summary: str = Field(description="A few lines for a human.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Free-form measurements.")
    gaps: list[Gap] = Field(default_factory=list)

    @field_validator("probe")
    @classmethod
    def _probe_id(cls, value: str) -> str:
        try:
            return check_lane_id(value)
        except UserError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("gaps")
    @classmethod
    def _unique_gap_ids(cls, value: list[Gap]) -> list[Gap]:
        taken: set[str] = set()
        unique = []
        for gap in value:
            gap_id = unique_lane_id(gap.id, taken)
            unique.append(gap if gap_id == gap.id else gap.model_copy(update={"id": gap_id}))
        return unique


class Plan(BaseModel):
    """`docs/_generated/execution_plan.json`: the lanes made from the probes' gaps."""

    model_config = ConfigDict(extra="forbid")

    version: str = PLAN_VERSION
    created_at: str = Field(default_factory=now_iso)
    sources: list[str] = Field(default_factory=list, description="The probes it was made from.")
    lanes: dict[str, LaneInput] = Field(
        default_factory=dict,
        description="Lane id → lane, in plan order.",
        json_schema_extra={"propertyNames": {"pattern": _LANE_ID.pattern}},
    )

    @field_validator("lanes")
    @classmethod
    def _graph(cls, value: dict[str, LaneInput]) -> dict[str, LaneInput]:
        # A UserError passes through pydantic untouched: read_plan names the file.
        check_lanes(value)
        return value
