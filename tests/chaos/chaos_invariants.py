"""What must hold after a chaos run, whatever struck it. Each invariant is a function
of what the run observed that returns its violations (empty: it holds); a scenario
names the ones it checks (`chaos_scenarios.Scenario.invariants`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chaos_hostile import INVARIANTS as HOSTILE_SET_INVARIANTS
from chaos_run import Observed

Check = Callable[[Observed], list[str]]
SETTLED = {"merged", "failed", "cancelled", "blocked", "verify_failed"}
NAMED = {"failed", "cancelled", "blocked", "verify_failed"}  # must carry an error
CODES = {0, 1, 2, 3}  # the documented exit codes


def _lanes(seen: Observed) -> dict[str, dict[str, Any]]:
    lanes: dict[str, dict[str, Any]] = seen.final.get("lanes", {})
    return lanes


def tracker_parses(seen: Observed) -> list[str]:
    """Every sample of tracker.json during the run parsed, and the last one validates."""
    from orchestree.models import Tracker

    found = [f"a tracker sample did not parse: {t}" for t in seen.torn[:3]]
    if not seen.final:
        return [*found, "the tracker is missing or does not parse at the end"]
    try:
        Tracker.model_validate(seen.final)
    except ValueError as exc:
        found.append(f"the final tracker is invalid: {str(exc)[:300]}")
    return found


def no_overlap(seen: Observed) -> list[str]:
    """No lane's agent ever ran twice at once (a second one found the lane's flock held)."""
    return [
        f"lane {lane}: an agent (pid {e['pid']}) started while another of its agents ran"
        for lane, events in seen.records.items()
        for e in events
        if e["ev"] == "overlap"
    ]


def commits_reachable(seen: Observed) -> list[str]:
    """Every commit an agent made is reachable from some ref (or a reflog) afterwards."""
    return [
        f"lane {lane}: commit {e['sha'][:10]} (attempt {e.get('attempt')}) is unreachable"
        for lane, events in seen.records.items()
        for e in events
        if e["ev"] == "commit" and e["sha"] not in seen.reachable
    ]


def terminal(seen: Observed) -> list[str]:
    """Every lane settled: merged, or failed/cancelled/blocked/verify_failed; a completed
    lane left only when its merge was skipped behind a dependency that did not merge."""
    found = []
    lanes = _lanes(seen)
    hostile_set = {lane.lane_id for lane in seen.plan.lanes if lane.script}  # hostile-outcome
    for lane_id, lane in sorted(lanes.items()):
        if lane_id in hostile_set:
            continue
        status = lane.get("status")
        skipped = (lane.get("merge") or {}).get("status") == "skipped"
        if status in SETTLED or (status == "completed" and skipped):
            continue
        found.append(f"lane {lane_id} ended {status} (error: {lane.get('error')!r})")
    planned = {lane.lane_id for lane in seen.plan.lanes}
    if set(lanes) != planned:
        found.append(f"the tracker's lanes {sorted(lanes)} are not the plan's {sorted(planned)}")
    return found


def base_forward(seen: Observed) -> list[str]:
    """The base branch only moved forward: each value descends from the one before."""
    return [
        f"main moved from {old[:10]} to {new[:10]}, which does not descend from it"
        for (old, new), ok in seen.ancestry.items()
        if not ok
    ]


def killed_named(seen: Observed) -> list[str]:
    """A lane completes only through an attempt whose agent ran to its end; a lane that
    did not complete says why; an attempt the suite killed never completes its lane."""
    found = []
    killed = {(i.get("lane"), i.get("attempt")) for i in seen.injected if "lane" in i}
    for lane_id, lane in sorted(_lanes(seen).items()):
        status, attempt = lane.get("status"), lane.get("attempts")
        events = seen.records.get(lane_id, [])
        ended = {e.get("attempt") for e in events if e["ev"] == "end"}
        if status in ("completed", "merged"):
            if attempt not in ended:
                found.append(
                    f"lane {lane_id} is {status} by attempt {attempt}, whose agent never "
                    "ran to its end"
                )
            if (lane_id, attempt) in killed:
                found.append(f"lane {lane_id} is {status} by attempt {attempt}, which was killed")
        elif status in NAMED and not lane.get("error"):
            found.append(f"lane {lane_id} is {status} without an error saying why")
    return found


def no_leftovers(seen: Observed) -> list[str]:
    """No orchestree process or agent of the run was still running at its end."""
    return [f"still running at the end: pid {pid} {argv}" for pid, argv in seen.leftovers.items()]


def clean_exits(seen: Observed) -> list[str]:
    """Every command the suite did not kill ended with a documented exit code, no
    traceback, within its time."""
    found = []
    for cmd in seen.commands:
        name = " ".join(cmd.args[:1])
        if cmd.hung:
            found.append(f"`orchestree {name}` still ran after its time limit")
        elif not cmd.killed and cmd.code not in CODES:
            found.append(f"`orchestree {name}` exited {cmd.code}: {cmd.err.strip()[-300:]}")
        if "Traceback" in cmd.err:
            found.append(f"`orchestree {name}` printed a traceback: {cmd.err.strip()[-600:]}")
    return found


def notified_once(seen: Observed) -> list[str]:
    """Every event `[notify] command` got was JSON, and none came twice, whatever
    struck the commands (the tracker records an event before it is sent)."""
    found, keys = [], []
    for line in seen.extra.get("notified", []):
        try:
            event = json.loads(line)
        except ValueError:
            found.append(f"a notification was not JSON: {line[:200]!r}")
            continue
        if event.get("event") != "run_finished":  # one per command, by design
            keys.append((event.get("event"), event.get("lane"), event.get("attempt")))
    found += [f"notified {key} {keys.count(key)} times" for key in sorted(set(keys), key=str)
              if keys.count(key) > 1]  # fmt: skip
    return found


def harmless(seen: Observed) -> list[str]:
    """The fault cost nothing: every lane merged, its agent started once and ran to its end."""
    found = []
    for lane_id, lane in sorted(_lanes(seen).items()):
        if lane.get("status") != "merged":
            found.append(f"lane {lane_id} is {lane.get('status')}: {lane.get('error')!r}")
        events = seen.records.get(lane_id, [])
        starts = [e for e in events if e["ev"] == "start"]
        ends = [e for e in events if e["ev"] == "end"]
        if len(starts) != 1 or len(ends) != 1:
            found.append(
                f"lane {lane_id}: its agent started {len(starts)} time(s) and ran to its end "
                f"{len(ends)} time(s), not once"
            )
    return found


def adopted(seen: Observed) -> list[str]:
    """Agents running when the orchestrator was SIGKILLed were adopted by the next one
    and ran to their end (never killed as "gone"), unless the suite cancelled their lane
    (a hostile set's `forge-pid`)."""
    ended = {e["pid"] for events in seen.records.values() for e in events if e["ev"] == "end"}
    cancelled = {
        e["pid"]
        for lane, events in seen.records.items()
        if _lanes(seen).get(lane, {}).get("status") == "cancelled"
        for e in events
    }
    return [
        f"agent pid {pid}, running when the orchestrator was killed, never ran to its end"
        for hit in seen.injected
        for pid in hit.get("running", [])
        if pid not in ended and pid not in cancelled
    ]


def hostile_acted(seen: Observed) -> list[str]:
    """The hostile agent did what it came for (else its scenario proves nothing)."""
    acted = any(e["ev"] == "hostile" for events in seen.records.values() for e in events)
    return [] if acted else ["no hostile agent recorded its action"]


def pool_swept(seen: Observed) -> list[str]:
    """After the resume and a `cleanup`, nothing of `[worktree] pool` is left, nor a
    copy `[worktree] share`'s stock was making."""
    left = seen.extra.get("pool_left")
    if left is None:
        return ["the run never looked at what the pool left"]
    return [f"left by the pool after cleanup: {item}" for item in left]


def templates_swept(seen: Observed) -> list[str]:
    """After a `cleanup` SIGKILLed while it removed stale share templates, and another
    one: none is left but the one the current config gives, and none is marked ready
    but partial (a lane would be given half a folder)."""
    left = seen.extra.get("templates")
    if left is None:
        return ["the run never looked at share's templates"]
    found = []
    for item in left:
        if not item["current"]:
            found.append(f"stale share template left after cleanup: {item['name']}")
        elif item["ready"] and not item["whole"]:
            found.append(f"share template {item['name']} is marked ready but partial")
    return found


INVARIANTS: dict[str, Check] = {
    "tracker-parses": tracker_parses,
    "no-overlap": no_overlap,
    "commits-reachable": commits_reachable,
    "terminal": terminal,
    "base-forward": base_forward,
    "killed-named": killed_named,
    "no-leftovers": no_leftovers,
    "clean-exits": clean_exits,
    "notified-once": notified_once,
    "harmless": harmless,
    "adopted": adopted,
    "hostile-acted": hostile_acted,
    "pool-swept": pool_swept,
    "templates-swept": templates_swept,
    **HOSTILE_SET_INVARIANTS,
}


def violations(seen: Observed, names: tuple[str, ...]) -> list[str]:
    return [f"[{name}] {problem}" for name in names for problem in INVARIANTS[name](seen)]
