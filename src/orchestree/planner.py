"""Probe results → a lane plan (DESIGN.md §7). Pure, apart from reading and writing files.

One lane per gap (or per file, or per probe); priorities carry over; each lane's agent
is its gap's, else the default. Two lanes whose paths overlap (the same path, or one a
folder holding the other) get a dependency, the higher priority first, ties in plan
order; lanes that share no path get none. Every edge points forward in that one total
order, so the plan is always a DAG, and an edge already implied by others is left out.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from orchestree.errors import UserError
from orchestree.lanegraph import is_lane_id
from orchestree.models import (
    PRIORITY_RANK,
    Gap,
    LaneInput,
    Plan,
    Priority,
    ProbeResult,
    describe_validation_error,
    lane_id_from,
    unique_lane_id,
)
from orchestree.newlanes import is_plan_shape
from orchestree.probes.output import RESULT_JSON, ProbeOutputError, load_probe_output

GroupBy = Literal["gap", "file", "probe"]
ROOT = "."


def load_results(generated_dir: Path) -> tuple[list[ProbeResult], list[str]]:
    """Every `<generated_dir>/<probe>/state_probe.json`, by folder name; and one line per
    file that could not be used. Folders without that file (lane results) are skipped.

    The folder's name is the probe's id (the pipeline chose it), whatever the file says.
    """
    results: list[ProbeResult] = []
    problems: list[str] = []
    if not generated_dir.is_dir():
        return results, problems
    for folder in sorted(p for p in generated_dir.iterdir() if p.is_dir()):
        file = folder / RESULT_JSON
        if not file.is_file():
            continue
        try:
            result = load_probe_output(file)
        except ProbeOutputError as exc:
            problems.append(str(exc))
            continue
        if result.probe != folder.name and is_lane_id(folder.name):
            result = result.model_copy(update={"probe": folder.name})
        results.append(result)
    return results, problems


@dataclass
class _Draft:
    """A lane before it has an id and dependencies."""

    base_id: str
    name: str
    tasks: list[str]
    priority: Priority
    paths: list[str]
    agent: str | None


def make_plan(
    results: Iterable[ProbeResult],
    *,
    default_agent: str,
    group_by: GroupBy = "gap",
    reserved: Collection[str] = (),
    created_at: str | None = None,
) -> Plan:
    """The plan for these probe results. `reserved`: ids already taken (the probes' own
    lanes), which lane ids avoid by a `-2`, `-3` … suffix, as do duplicates."""
    results = list(results)
    drafts = _drafts(results, group_by)
    taken = set(reserved)
    ids = [unique_lane_id(draft.base_id, taken) for draft in drafts]
    needs = dependencies([(d.priority, d.paths) for d in drafts])
    lanes = {
        lane_id: LaneInput(
            name=draft.name,
            tasks=draft.tasks,
            priority=draft.priority,
            depends_on=[ids[j] for j in needs[i]],
            agent=draft.agent or default_agent,
        )
        for i, (lane_id, draft) in enumerate(zip(ids, drafts, strict=True))
    }
    extra = {"created_at": created_at} if created_at else {}
    return Plan(sources=[r.probe for r in results], lanes=lanes, **extra)


def _drafts(results: list[ProbeResult], group_by: GroupBy) -> list[_Draft]:
    if group_by == "gap":
        return [_merge(gap.id, [gap]) for r in results for gap in r.gaps]
    if group_by == "probe":
        return [
            _merge(f"{r.probe}-fixes", r.gaps, f"Fix what probe {r.probe} found")
            for r in results
            if r.gaps
        ]
    if group_by == "file":
        groups = _by_shared_path([gap for r in results for gap in r.gaps])
        return [_merge(f"fix-{g[0].paths[0]}" if g[0].paths else g[0].id, g) for g in groups]
    raise UserError(f"group_by must be 'gap', 'file' or 'probe', not {group_by!r}")


def _merge(base: str, gaps: list[Gap], name: str | None = None) -> _Draft:
    """One lane for these gaps: every task, all paths, the highest priority."""
    first = min(gaps, key=lambda g: PRIORITY_RANK[g.priority])
    paths = list(dict.fromkeys(p for g in gaps for p in g.paths))
    if name is None:
        name = gaps[0].title if len(gaps) == 1 else f"{len(gaps)} gaps in {_listed(paths)}"
    elif len(gaps) > 1:
        name = f"{name} ({len(gaps)} gaps)"
    return _Draft(
        base_id=lane_id_from(base),
        name=name,
        tasks=list(dict.fromkeys(t for g in gaps for t in (g.tasks or [g.title]))),
        priority=first.priority,
        paths=paths,
        agent=next(
            (g.agent for g in sorted(gaps, key=lambda g: PRIORITY_RANK[g.priority]) if g.agent),
            None,
        ),
    )


def _listed(paths: list[str]) -> str:
    if not paths:
        return "no particular file"
    return paths[0] if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more"


def _by_shared_path(gaps: list[Gap]) -> list[list[Gap]]:
    """Gaps joined when they name the same path (transitively), in order of first gap."""
    parent = list(range(len(gaps)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, gap in enumerate(gaps):
        for path in gap.paths:
            if path in owner:
                a, b = sorted((find(i), find(owner[path])))
                parent[b] = a
            else:
                owner[path] = i
    groups: dict[int, list[Gap]] = defaultdict(list)
    for i, gap in enumerate(gaps):
        groups[find(i)].append(gap)
    return list(groups.values())


def overlaps(a: str, b: str) -> bool:
    """The same path, or one a folder holding the other (`.` holds everything)."""
    return a == b or ROOT in (a, b) or b.startswith(a + "/") or a.startswith(b + "/")


def dependencies(lanes: list[tuple[Priority, list[str]]]) -> list[list[int]]:
    """For lanes given as (priority, paths) in plan order: the indexes each must wait for.

    Lanes are ranked by priority, then plan order; a lane waits for the lower-ranked
    lanes whose paths overlap its own, except those it already waits for through others.
    """
    order = sorted(range(len(lanes)), key=lambda i: (PRIORITY_RANK[lanes[i][0]], i))
    rank = {lane: pos for pos, lane in enumerate(order)}
    exact: dict[str, set[int]] = defaultdict(set)
    under: dict[str, set[int]] = defaultdict(set)  # folder → lanes with a path inside it
    for i, (_, paths) in enumerate(lanes):
        for path in paths:
            exact[path].add(i)
            for folder in _folders(path):
                under[folder].add(i)
    ancestors = [0] * len(lanes)  # bit j set: lane j must finish first (directly or not)
    needs: list[list[int]] = [[] for _ in lanes]
    for i in order:
        others: set[int] = set()
        for path in lanes[i][1]:
            others |= exact[path] | under[path]
            for folder in _folders(path):
                others |= exact[folder]
        earlier = sorted((j for j in others if rank[j] < rank[i]), key=rank.__getitem__)
        reach = 0
        for j in reversed(earlier):  # nearest first: what they imply is then skipped
            if not reach >> j & 1:
                needs[i].append(j)
                reach |= (1 << j) | ancestors[j]
        ancestors[i] = reach
        needs[i].sort()
    return needs


def _folders(path: str) -> list[str]:
    """The folders holding `path`, the repository root (`.`) included."""
    folders = []
    while "/" in path:
        path = path.rpartition("/")[0]
        folders.append(path)
    return [*folders, ROOT] if path != ROOT else []


def write_plan(path: Path, plan: Plan) -> None:
    """Write the plan as JSON, lanes in plan order; atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = plan.model_dump(mode="json", exclude_none=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_plan(path: Path) -> Plan:
    """Read and validate a plan (perhaps written by a planner agent or edited by hand).

    A missing file, bad JSON, an unknown field, a bad lane id, an unknown dependency
    or a cycle is a one-line `UserError` naming the file.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no plan there; run `orchestree plan` first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        message = f"{path}: not valid JSON ({exc.msg} at {where}); fix or remove it"
        raise UserError(message) from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: must hold a JSON object, not {type(raw).__name__}")
    if not is_plan_shape(raw):  # `add-lane --from`'s shape: an object of id -> lane
        raw = {"lanes": raw}
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, str(path))) from None
    except UserError as exc:  # a bad id, an unknown dependency or a cycle
        raise UserError(f"{path}: {exc}") from None
