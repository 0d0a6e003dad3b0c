"""Which lanes may start now: pure decisions over a snapshot of the lanes.

DAG order via `graphlib`; ready lanes start by priority, then by how much work waits
on them (the longest chain of dependents first, which keeps the critical path
moving), then plan order; at most `max_parallel` at once; a `parallel: false` lane
runs alone. Dependents of a lane that failed, was cancelled or blocked are blocked.
With a memory budget (`Memory`), a lane starts only while the memory available minus
the running lanes' estimates leaves `min_free_mb`; one lane may always run.
"""

from __future__ import annotations

import graphlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from orchestree.models import PRIORITY_RANK, SUCCEEDED, UNSUCCESSFUL, Lane


@dataclass(frozen=True)
class Decision:
    start: list[str] = field(default_factory=list)
    block: dict[str, str] = field(default_factory=dict)  # lane -> why
    waiting: list[str] = field(default_factory=list)  # ready, but memory does not allow


@dataclass(frozen=True)
class Memory:
    """What admission by memory decides from (DESIGN.md §15): MemAvailable now, the
    `[defaults] min_free_mb` to keep, and each lane's agent estimate (MB)."""

    available_mb: int
    min_free_mb: int
    estimates: Mapping[str, int]


def admit(
    ready: list[str], running: Collection[str], memory: Memory
) -> tuple[list[str], list[str]]:
    """Split `ready` (in start order) into the lanes memory admits now and those that
    wait. A lane is admitted while `available - estimates of the running and of those
    admitted before it >= min_free`; with nothing running, the first always is."""
    used = sum(memory.estimates.get(lane_id, 0) for lane_id in running)
    start: list[str] = []
    for n, lane_id in enumerate(ready):
        alone = not running and not start
        if not alone and memory.available_mb - used < memory.min_free_mb:
            return start, ready[n:]
        start.append(lane_id)
        used += memory.estimates.get(lane_id, 0)
    return start, []


# The last graph's chain lengths: the execute loop asks every tick, and the graph only
# changes when lanes are added (at 500 lanes, the sort cost more than the rest of it).
_last: list[tuple[tuple[tuple[str, tuple[str, ...]], ...], dict[str, int]]] = []


def chain_lengths(lanes: Mapping[str, Lane]) -> dict[str, int]:
    """For each lane, the number of lanes on the longest chain that waits on it."""
    graph = tuple((lane_id, tuple(lane.depends_on)) for lane_id, lane in lanes.items())
    if _last and _last[0][0] == graph:
        return dict(_last[0][1])
    depth = _chain_lengths(lanes)
    _last[:] = [(graph, dict(depth))]
    return depth


def _chain_lengths(lanes: Mapping[str, Lane]) -> dict[str, int]:
    dependents: dict[str, list[str]] = {lane_id: [] for lane_id in lanes}
    for lane_id, lane in lanes.items():
        for dep in lane.depends_on:
            if dep in dependents:
                dependents[dep].append(lane_id)
    order = list(graphlib.TopologicalSorter(dependents).static_order())
    depth: dict[str, int] = {}
    for lane_id in order:  # dependents come before the lanes they wait on
        depth[lane_id] = 1 + max((depth[d] for d in dependents[lane_id]), default=0)
    return depth


def decide(
    lanes: Mapping[str, Lane],
    running: set[str],
    max_parallel: int,
    selected: set[str] | None = None,
    memory: Memory | None = None,
) -> Decision:
    """Lanes to start now and pending lanes that can never start (with the reason).

    `running` are lanes whose agents run; `selected` limits starting to those lanes
    (exec-lane), though blocking still follows the whole graph. With `memory`, the
    lanes it does not admit are `waiting`.
    """
    block: dict[str, str] = {}
    ready: list[str] = []
    for lane_id, lane in lanes.items():
        if lane.status != "pending" or lane_id in running:
            continue
        dead = [d for d in lane.depends_on if lanes[d].status in UNSUCCESSFUL]
        if dead:
            dep = dead[0]
            block[lane_id] = f"dependency {dep!r} {lanes[dep].status}"
            continue
        if all(lanes[d].status in SUCCEEDED for d in lane.depends_on):
            ready.append(lane_id)
    if selected is not None:
        ready = [lane_id for lane_id in ready if lane_id in selected]
    depth = chain_lengths(lanes)
    ready.sort(key=lambda i: (PRIORITY_RANK[lanes[i].priority], -depth[i], lanes[i].order, i))
    if any(not lanes[r].parallel for r in running if r in lanes):
        return Decision([], block)
    start: list[str] = []
    for lane_id in ready:
        if len(running) + len(start) >= max_parallel:
            break
        if not lanes[lane_id].parallel:
            if not running and not start:
                start.append(lane_id)
            break  # a lane that runs alone holds the queue until it can
        start.append(lane_id)
    if memory is None:
        return Decision(start, block)
    start, waiting = admit(start, running, memory)
    return Decision(start, block, waiting)
