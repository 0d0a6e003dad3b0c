"""What a pending lane waits for, in words the monitors show (issue 16).

From the tracker alone, as the monitors read it: its dependencies that have not
finished (by id), its agent held for a missing login, the run's budget or deadline
reached (limits.py), or memory (admission). A pure function; the monitors never write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestree.access_tracker import SUCCEEDED
from orchestree.monitor.fields import as_dict, as_str, as_strs, opt_str
from orchestree.visible import visible


def pending_waits(tracker: Mapping[str, Any]) -> dict[str, str]:
    """Pending lane id (as shown) → what it waits for; lanes that wait for nothing
    (about to start) are left out."""
    lanes = {str(k): as_dict(v) for k, v in as_dict(tracker.get("lanes")).items()}
    held = _held_agents(lanes)
    stop = opt_str(as_dict(tracker.get("limits")).get("stop_message"))
    found = {}
    for lane_id, raw in lanes.items():
        if as_str(raw.get("status"), "pending") != "pending":
            continue
        reasons = []
        waiting = opt_str(raw.get("waiting_for"))
        if waiting in ("budget", "deadline"):
            reasons.append(stop or f"the run's {waiting} is reached")
        elif waiting == "memory":
            reasons.append("memory ([defaults] min_free_mb)")
        statuses = {d: as_str(as_dict(lanes.get(d)).get("status"), "pending") for d in
                    as_strs(raw.get("depends_on"))}  # fmt: skip
        deps = [d for d, status in statuses.items() if status not in SUCCEEDED]
        if deps:
            reasons.append(f"dependencies {', '.join(deps)}")
        agent = raw.get("agent")
        if isinstance(agent, str | type(None)) and agent in held:
            reasons.append(f"agent {held[agent]!r} held: not logged in")
        if reasons:
            found[visible(lane_id)] = visible("; ".join(reasons))
    return found


def _held_agents(lanes: Mapping[str, Mapping[str, Any]]) -> dict[str | None, str]:
    """The lanes' `agent` values (None: the default agent) whose agent is held → its name."""
    held: dict[str | None, str] = {}
    for raw in lanes.values():
        by = opt_str(raw.get("held"))  # the agent whose missing login holds this lane
        if as_str(raw.get("status")) == "blocked" and by:
            agent = raw.get("agent")
            held[agent if isinstance(agent, str) else None] = by
    return held
