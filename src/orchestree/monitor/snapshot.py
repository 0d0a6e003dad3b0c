"""The tracker → what both monitors show, as one pure function (DESIGN.md §9).

`build_snapshot` reads a raw tracker dict, not a validated `models.Tracker`: agents
write into the tracker too, and a monitor that refused to show a tracker with one odd
field would go blind exactly when something is wrong. So every field is read
defensively (`fields.py`), and nothing in this module does I/O; the clock and the process
table come in as arguments, which keeps the tests deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from orchestree.access_tracker import LANE_TRANSITIONS, MERGE_DECIDED, PHASES
from orchestree.monitor.fields import (
    as_dict,
    as_int,
    as_num,
    as_str,
    as_strs,
    fmt_duration,
    opt_str,
    parse_time,
    progress_text,
    seconds_between,
)
from orchestree.monitor.views import (
    AgentView,
    LaneView,
    LaneWarning,
    Snapshot,
    Statistics,
)
from orchestree.monitor.waits import pending_waits
from orchestree.procs import Identity
from orchestree.visible import visible

LANE_STATUSES = tuple(LANE_TRANSITIONS)
AGENT_SYMBOLS = {"created": "○", "running": "→", "completed": "✓", "failed": "✗"}
# Lanes that have stopped running, whatever the outcome.
SETTLED = frozenset(LANE_STATUSES) - {"pending", "running"}
MERGE_CANDIDATES = MERGE_DECIDED | {"completed"}
# The order the views list lanes in: what needs a look first.
_LISTING = "running failed conflict verify_failed blocked pending cancelled completed merged"
STATUS_ORDER = {status: i for i, status in enumerate(_LISTING.split())}
PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}

NO_AGENT: Mapping[str, Any] = MappingProxyType({})

ProcessIdentity = Callable[[int], Identity | None]
"""pid → the live process's identity (`procs.identity`: start ticks since boot and boot
id, which no clock step moves), None when there is no such process."""


def _agents_by_lane(agents: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """lane id → its agent: `agent-<lane>` first, else an agent naming the lane."""
    found: dict[str, Mapping[str, Any]] = {}
    for agent in agents.values():
        if isinstance(agent, dict) and isinstance(agent.get("lane"), str):
            found.setdefault(agent["lane"], agent)
    for name, agent in agents.items():
        if isinstance(agent, dict) and isinstance(name, str) and name.startswith("agent-"):
            found[name[len("agent-") :]] = agent
    return found


def _pid_warning(
    lane: LaneView,
    agent: Mapping[str, Any],
    this_host: str | None,
    process_identity: ProcessIdentity,
) -> LaneWarning | None:
    lane_id = lane.id
    pid = as_int(agent.get("pid"))
    host = lane.host
    if pid is None or (host is not None and this_host is not None and host != this_host):
        return None  # not started yet, or on another machine: its pid means nothing here
    found = process_identity(pid)
    if found is None:
        return LaneWarning(
            "dead_pid",
            lane_id,
            f"lane {lane_id} is marked running but its process {pid} is gone; "
            "run `orchestree execute` to resume it",
        )
    # Only a recorded identity can say the pid was reused; a wall-clock `pid_started`
    # (written by the released version) cannot, since a clock step moves it.
    recorded = Identity.recorded(pid, as_int(agent.get("pid_ticks")), agent.get("boot_id"))
    if recorded is not None and recorded != found:
        return LaneWarning(
            "pid_reused",
            lane_id,
            f"lane {lane_id} is marked running but pid {pid} now belongs to another "
            "process; its agent is gone; run `orchestree execute` to resume it",
        )
    return None


def _lane_warnings(lane: LaneView, timeout_s: float) -> list[LaneWarning]:
    out: list[LaneWarning] = []
    lid = lane.id
    if lane.status == "running" and lane.duration_s is not None and lane.duration_s > timeout_s:
        out.append(
            LaneWarning(
                "timeout",
                lid,
                f"lane {lid} has run {fmt_duration(lane.duration_s)}, over its timeout of "
                f"{fmt_duration(timeout_s)}",
            )
        )
    if lane.status == "conflict" or lane.merge_status == "conflict":
        files = ", ".join(lane.conflicts) or "files not recorded"
        out.append(LaneWarning("conflict", lid, f"lane {lid} conflicts with the base in: {files}"))
    if lane.status == "failed":
        why = f": {lane.error}" if lane.error else ""
        out.append(LaneWarning("failed", lid, f"lane {lid} failed{why}; log: {lane.log}"))
    if lane.status == "verify_failed":
        why = f": {lane.error}" if lane.error else ""
        out.append(LaneWarning("verify_failed", lid, f"lane {lid} failed merge verification{why}"))
    if lane.status == "blocked":
        why = lane.error or "a dependency did not succeed"
        out.append(LaneWarning("blocked", lid, f"lane {lid} is blocked: {why}"))
    if lane.no_changes and lane.status in MERGE_CANDIDATES:
        out.append(LaneWarning("no_changes", lid, f"lane {lid} finished without changing any file"))
    return out


def radar_warnings(tracker: Mapping[str, Any]) -> list[LaneWarning]:
    """The conflict radar's findings (radar.py), worded as `orchestree radar` says them."""
    base = as_str(tracker.get("base_branch"), "the base branch")
    found = []
    raws = tracker.get("radar")
    for raw in raws if isinstance(raws, list) else []:
        lanes, files = as_strs(as_dict(raw).get("lanes")), as_strs(as_dict(raw).get("files"))
        if len(lanes) != 2:
            continue
        other = f"the base branch {base}" if lanes[1] == "<base>" else f"lane {lanes[1]}"
        said = ", ".join(files) or "(no file named)"
        message = visible(f"radar: lane {lanes[0]} would conflict with {other} in {said}")
        found.append(LaneWarning("radar", lanes[0], message))
    return found


# Warnings in the order they need a look: what failed or conflicted first, notices last.
_WARNING_KINDS = ("failed", "conflict", "verify_failed", "dead_pid", "pid_reused", "timeout",
                  "blocked", "no_changes")  # fmt: skip
WARNING_ORDER = {kind: i for i, kind in enumerate(_WARNING_KINDS)}


def order_warnings(warnings: list[LaneWarning]) -> list[LaneWarning]:
    """Failures and conflicts first; the "changed nothing" notices folded into one
    warning, so on a small screen they never push a failure out of sight."""
    quiet = [w for w in warnings if w.kind == "no_changes"]
    loud = sorted(
        (w for w in warnings if w.kind != "no_changes"),
        key=lambda w: WARNING_ORDER.get(w.kind, len(WARNING_ORDER)),
    )  # a stable sort: lanes keep the listing's order within a kind
    if len(quiet) > 1:
        names = ", ".join(w.lane for w in quiet)
        n = len(quiet)
        quiet = [LaneWarning("no_changes", quiet[0].lane,
                             f"{n} lanes finished without changing any file: {names}")]  # fmt: skip
    return loud + quiet


def _lane_view(
    lane_id: str, raw: Mapping[str, Any], agent: Mapping[str, Any], now: datetime
) -> LaneView:
    status = as_str(raw.get("status"), "pending")
    merge = as_dict(raw.get("merge"))
    log = opt_str(agent.get("log")) or f".orchestration/logs/agent-{lane_id}.log"
    return LaneView(
        id=visible(lane_id),  # a key an agent may have written into the file
        name=as_str(raw.get("name")) or lane_id,
        kind=as_str(raw.get("kind"), "lane"),
        status=status,
        priority=as_str(raw.get("priority"), "medium"),
        progress=progress_text(raw.get("progress")),
        results=as_strs(raw.get("results")),
        attempts=as_int(raw.get("attempts")) or 0,
        max_attempts=as_int(raw.get("max_attempts")),
        duration_s=seconds_between(
            raw.get("started_at"), raw.get("finished_at"), now, status == "running"
        ),
        cost_usd=as_num(raw.get("cost_usd")),
        host=opt_str(raw.get("host")) or opt_str(agent.get("host")),
        error=opt_str(raw.get("error")),
        depends_on=as_strs(raw.get("depends_on")),
        merge_status=opt_str(merge.get("status")),
        conflicts=as_strs(merge.get("conflicts")),
        changed_files=len(as_strs(raw.get("changed_files"))),
        no_changes=raw.get("no_changes") is True,
        log=log,
        waiting_for=opt_str(raw.get("waiting_for")),
    )


def _phase_progress(phase: int, status: str, lanes: list[LaneView]) -> float:
    if status == "completed":
        return 1.0
    probes = [lane for lane in lanes if lane.kind == "probe"]
    work = [lane for lane in lanes if lane.kind != "probe"]
    if phase == 0:
        return 1.0
    if phase == 1:
        return _share(sum(lane.status in SETTLED for lane in probes), len(probes))
    if phase == 2:
        return 1.0 if work else 0.0
    if phase == 3:
        return _share(sum(lane.status in SETTLED for lane in work), len(work))
    candidates = [lane for lane in lanes if lane.status in MERGE_CANDIDATES]
    return _share(sum(lane.status in MERGE_DECIDED for lane in candidates), len(candidates))


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _elapsed(lanes_raw: Mapping[str, Any], now: datetime, any_running: bool) -> float | None:
    records = [as_dict(v) for v in lanes_raw.values()]
    starts = [t for t in (parse_time(r.get("started_at")) for r in records) if t]
    if not starts:
        return None
    ends = [t for t in (parse_time(r.get("finished_at")) for r in records) if t]
    end = now if any_running or not ends else max(ends)
    return max(0.0, (end - min(starts)).total_seconds())


def _agent_view(name: str, raw: Mapping[str, Any], now: datetime) -> AgentView:
    status = as_str(raw.get("status"), "created")
    return AgentView(
        name=visible(name),
        lane=as_str(raw.get("lane")),
        status=status,
        symbol=AGENT_SYMBOLS.get(status, "?"),
        pid=as_int(raw.get("pid")),
        host=opt_str(raw.get("host")),
        exit_code=as_int(raw.get("exit_code")),
        log=opt_str(raw.get("log")),
        duration_s=seconds_between(
            raw.get("started_at"), raw.get("finished_at"), now, status == "running"
        ),
    )


def lane_sort_key(lane: LaneView) -> tuple[int, int, str]:
    return (
        STATUS_ORDER.get(lane.status, len(STATUS_ORDER)),
        PRIORITY_ORDER.get(lane.priority, 3),
        lane.id,
    )


@dataclass
class Memo:
    """Views of lanes and agents that no longer change with time (anything not
    running), kept between snapshots of the same tracker. Entries hold the raw
    records they came from and are used only while those very objects come back, so a
    memo never changes a result, it only skips recomputing it: a monitor re-reads a
    500-lane tracker every second, and most of it is finished work. The caller must
    not mutate a tracker it passed with a memo (the reader parses a new one per change)."""

    lanes: dict[str, tuple[Any, Any, LaneView, list[LaneWarning]]] = field(default_factory=dict)
    agents: dict[str, tuple[Any, AgentView]] = field(default_factory=dict)


def build_snapshot(
    tracker: Mapping[str, Any],
    *,
    now: datetime,
    process_identity: ProcessIdentity,
    default_timeout_s: float = 3600.0,
    this_host: str | None = None,
    memo: Memo | None = None,
) -> Snapshot:
    """What the monitors show for `tracker` at time `now` (timezone-aware).

    `process_identity(pid)` answers for the pids of running lanes (`ProcessIdentity`);
    `this_host` is this machine's name, so pids of lanes run elsewhere are not checked.
    """
    lanes_raw = as_dict(tracker.get("lanes"))
    agents_raw = as_dict(tracker.get("agents"))
    agent_of = _agents_by_lane(agents_raw)
    lanes: list[LaneView] = []
    warnings: list[LaneWarning] = []
    memo = memo if memo is not None else Memo()
    lane_memo: dict[str, tuple[Any, Any, LaneView, list[LaneWarning]]] = {}
    for key, raw_lane in lanes_raw.items():
        lane_id = str(key)
        raw = as_dict(raw_lane)
        agent = agent_of.get(lane_id, NO_AGENT)
        hit = memo.lanes.get(lane_id)
        if hit is not None and hit[0] is raw and hit[1] is agent:
            lane, found = hit[2], hit[3]
        else:
            lane = _lane_view(lane_id, raw, agent, now)
            found = _lane_warnings(lane, as_num(raw.get("timeout_s")) or default_timeout_s)
        if lane.status == "running":
            dead = _pid_warning(lane, agent, this_host, process_identity)
            found = [dead, *found] if dead else found
        else:
            lane_memo[lane_id] = (raw, agent, lane, found)
        lanes.append(lane)
        warnings.extend(found)
    memo.lanes = lane_memo
    waits = pending_waits(tracker)  # from other lanes too: never memoised with the lane
    lanes = [replace(lane, waits=waits[lane.id]) if lane.id in waits else lane for lane in lanes]
    warnings.extend(radar_warnings(tracker))
    lanes.sort(key=lane_sort_key)
    order = {lane.id: i for i, lane in enumerate(lanes)}
    warnings.sort(key=lambda w: order.get(w.lane, len(order)))
    warnings = order_warnings(warnings)

    agents = []
    agent_memo: dict[str, tuple[Any, AgentView]] = {}
    for key, raw_agent in agents_raw.items():
        raw = as_dict(raw_agent)
        seen = memo.agents.get(str(key))
        view = seen[1] if seen is not None and seen[0] is raw else _agent_view(str(key), raw, now)
        if view.status != "running":
            agent_memo[str(key)] = (raw, view)
        agents.append(view)
    memo.agents = agent_memo

    by_status = dict.fromkeys(LANE_STATUSES, 0)
    for lane in lanes:
        by_status[lane.status] = by_status.get(lane.status, 0) + 1
    agents_by_status = dict.fromkeys(AGENT_SYMBOLS, 0)
    for agent_view in agents:
        agents_by_status[agent_view.status] = agents_by_status.get(agent_view.status, 0) + 1
    stats = Statistics(
        total=len(lanes),
        by_status=by_status,
        agents_by_status=agents_by_status,
        running=by_status["running"],
        merged=by_status["merged"],
        conflicts=by_status["conflict"],
        failed=by_status["failed"],
        elapsed_s=_elapsed(lanes_raw, now, by_status["running"] > 0),
        agent_time_s=sum(lane.duration_s or 0.0 for lane in lanes),
        cost_usd=sum(lane.cost_usd or 0.0 for lane in lanes),
    )

    phase = as_int(tracker.get("phase")) or 0
    phase = min(max(phase, 0), len(PHASES) - 1)
    status = as_str(tracker.get("status"), "initialised")
    status = "initialised" if status == "initialized" else status  # one spelling, as models
    updated = parse_time(tracker.get("updated_at"))
    return Snapshot(
        status=status,
        phase=phase,
        phase_name=PHASES[phase],
        phase_progress=_phase_progress(phase, status, lanes),
        completion=_share(sum(lane.status in SETTLED for lane in lanes), len(lanes)),
        repo=as_str(tracker.get("repo")),
        base_branch=as_str(tracker.get("base_branch")),
        updated_at=opt_str(tracker.get("updated_at")),
        updated_ago_s=max(0.0, (now - updated).total_seconds()) if updated else None,
        agents=agents,
        lanes=lanes,
        statistics=stats,
        warnings=warnings,
    )
