"""The typed snapshot both monitors render, and `/api/status` serves as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AgentView:
    name: str
    lane: str
    status: str
    symbol: str
    pid: int | None
    host: str | None
    exit_code: int | None
    log: str | None
    duration_s: float | None


@dataclass(frozen=True)
class LaneView:
    id: str
    name: str
    kind: str
    status: str
    priority: str
    progress: str
    results: list[str]
    attempts: int
    max_attempts: int | None
    duration_s: float | None
    cost_usd: float | None
    host: str | None
    error: str | None
    depends_on: list[str]
    merge_status: str | None
    conflicts: list[str]
    changed_files: int
    no_changes: bool
    log: str
    waiting_for: str | None = None  # "memory": ready, but admission holds it
    # A pending lane: what it waits for, in words (monitor/waits.py); None otherwise.
    waits: str | None = None


@dataclass(frozen=True)
class LaneWarning:
    kind: str  # dead_pid, pid_reused, timeout, conflict, failed, verify_failed, blocked, no_changes
    lane: str
    message: str


@dataclass(frozen=True)
class Statistics:
    total: int
    by_status: dict[str, int]
    agents_by_status: dict[str, int]
    running: int
    merged: int
    conflicts: int
    failed: int
    elapsed_s: float | None
    agent_time_s: float
    cost_usd: float


@dataclass(frozen=True)
class Snapshot:
    status: str
    phase: int
    phase_name: str
    phase_progress: float
    completion: float
    repo: str
    base_branch: str
    updated_at: str | None
    updated_ago_s: float | None
    agents: list[AgentView]
    lanes: list[LaneView]
    statistics: Statistics
    warnings: list[LaneWarning] = field(default_factory=list)


def to_json_dict(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready dicts. Shallow views of the frozen records, not
    copies: `dataclasses.asdict` deep-copies and cost more than the snapshot itself."""
    out = dict(vars(snap))
    out["agents"] = [vars(a) for a in snap.agents]
    out["lanes"] = [vars(lane) for lane in snap.lanes]
    out["statistics"] = vars(snap.statistics)
    out["warnings"] = [vars(w) for w in snap.warnings]
    return out
