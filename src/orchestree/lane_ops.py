"""The lane commands: add, retry, cancel, and a lane's log.

Plain functions that take a `Repo` and options and return results; they never see
Typer objects.
"""

from __future__ import annotations

import codecs
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestree import git, procs, restart
from orchestree.errors import UserError
from orchestree.executors import launch
from orchestree.layout import KEPT, agent_name
from orchestree.models import (
    LANE_STATUSES,
    UNSUCCESSFUL,
    Lane,
    LaneInput,
    Tracker,
    check_graph,
    check_lane_id,
    describe_validation_error,
)
from orchestree.repo import Repo
from orchestree.visible import visible


def add_lanes(repo: Repo, lanes: dict[str, dict[str, Any]], replace: bool = False) -> list[str]:
    """Validate lanes as a whole and register them in one tracker write."""
    checked: dict[str, LaneInput] = {}
    for lane_id, raw in lanes.items():
        check_lane_id(lane_id)
        if not isinstance(raw, dict):
            raise UserError(f"lane {lane_id!r} must be a JSON object")
        try:
            spec = LaneInput.model_validate(raw)
        except ValidationError as exc:
            raise UserError(describe_validation_error(exc, f"lane {lane_id!r}")) from None
        if spec.agent is not None:
            repo.config.check_agent(spec.agent, f"lane {lane_id!r}")
        checked[lane_id] = spec
    if replace:  # refuse before a merged lane's branch is retired, not after
        current = repo.store.read().lanes
        for lane_id in checked:
            old = current.get(lane_id)
            if (
                old is not None
                and old.status != "merged"
                and (old.status != "pending" or old.attempts)
            ):
                raise UserError(_why_not_replaced(lane_id, old.status))
        check_graph({**{k: v.depends_on for k, v in current.items()},
                     **{k: v.depends_on for k, v in checked.items()}})  # fmt: skip
        _retire_merged(repo, list(checked))

    adopted = _adoptable(repo, list(checked))

    def change(tracker: Tracker) -> None:
        order = max((lane.order for lane in tracker.lanes.values()), default=-1) + 1
        for lane_id, spec in checked.items():
            existing = tracker.lanes.get(lane_id)
            if existing is not None:
                if not replace:
                    raise UserError(
                        f"lane {lane_id!r} already exists; use --replace to redefine it"
                    )
                if existing.status != "pending" or existing.attempts:
                    raise UserError(_why_not_replaced(lane_id, existing.status))
            lane = Lane(**spec.model_dump(), order=existing.order if existing else order)
            if existing is None:
                order += 1
                # A branch a reset kept: the lane continues on it (as `retry --keep-base`).
                lane.start_commit = adopted.get(lane_id)
            tracker.lanes[lane_id] = lane
        check_graph({k: v.depends_on for k, v in tracker.lanes.items()})

    repo.store.update(change, "add-lane", lanes=sorted(checked), adopted=sorted(adopted))
    for lane_id in adopted:  # the tracker now holds its start point
        git.delete_ref(repo.root, f"refs/orchestree/kept/{lane_id}")
    return list(checked)


def _adoptable(repo: Repo, lane_ids: list[str]) -> dict[str, str]:
    """Lane id -> start point, for new lanes whose `lane-<id>` branch a reset kept."""

    known = repo.store.read().lanes
    # One listing of the kept marks instead of two git calls per new lane (issue 18):
    # a lane without a mark has nothing to adopt. Lane ids hold no "/".
    kept = {ref.rsplit("/", 1)[-1] for ref in git.ref_heads(repo.root, KEPT)}
    found = {k: restart.adoptable_start(repo, k) for k in lane_ids if k not in known and k in kept}
    return {k: v for k, v in found.items() if v is not None}


def _why_not_replaced(lane_id: str, status: str) -> str:
    """What works instead of `--replace` for a lane that has started and is not merged."""
    instead = {
        "running": f"cancel it first (`orchestree cancel {lane_id}`)",
        "completed": f"merge it first (`orchestree merge --lane {lane_id}`), then replace it",
    }.get(status, f"`orchestree retry {lane_id}` runs it again from the current base")
    return (
        f"lane {lane_id!r} has started ({status}); a lane can be replaced before it starts "
        f"or once merged: {instead}"
    )


def _retire_merged(repo: Repo, lane_ids: list[str]) -> None:
    """Merged lanes being replaced start over: keep each one's branch head under the
    attempts ref, remove its worktree and branch, and drop its record (a merged lane
    cannot become pending in place), so `add_lanes` registers it afresh."""

    lanes = repo.store.read().lanes
    merged = [k for k in lane_ids if k in lanes and lanes[k].status == "merged"]
    for lane_id in merged:
        restart.retire_branch(repo, lane_id, lanes[lane_id], "remove the worktree by hand")

    def change(tracker: Tracker) -> None:
        for lane_id in merged:
            if tracker.lanes.get(lane_id) is not None and tracker.lanes[lane_id].status == "merged":
                del tracker.lanes[lane_id]
                tracker.agents.pop(agent_name(lane_id), None)

    if merged:
        repo.store.update(change, "lane-retired", lanes=merged)


def require_lane(repo: Repo, lane_id: str, statuses: Collection[str], verb: str) -> Lane:
    lane = repo.store.read().lanes.get(lane_id)
    if lane is None:
        raise UserError(f"no lane {lane_id!r}; `orchestree status` lists the lanes")
    if lane.status not in statuses:
        raise UserError(
            f"lane {lane_id!r} is {lane.status}; only a {' or '.join(sorted(statuses))} "
            f"lane can {verb}"
        )
    return lane


def require_ready(repo: Repo, lane_id: str) -> Lane:
    """A pending lane whose dependencies have all completed (what exec-lane runs)."""
    lane = require_lane(repo, lane_id, {"pending"}, "run")
    lanes = repo.store.read().lanes
    waiting = [d for d in lane.depends_on if lanes[d].status not in ("completed", "merged")]
    if waiting:
        dep = waiting[0]
        raise UserError(
            f"lane {lane_id!r} waits on lane {dep!r} ({lanes[dep].status}); "
            f"run `orchestree exec-lane {dep}` first, or `orchestree execute` for all"
        )
    return lane


@dataclass(frozen=True)
class Retried:
    freed: list[str]  # lanes blocked only behind it, pending again
    fresh: bool  # it starts over from the current base
    kept: str | None  # where its earlier head is kept, when it starts over


def retry_lane(repo: Repo, lane_id: str, keep_base: bool = False) -> Retried:
    """Make a finished-badly lane pending again, with the lanes blocked behind it.

    A conflicted lane, or one the base branch has moved past, starts over from the
    current base (its earlier head kept under `refs/orchestree/attempts/`); with
    `keep_base` it continues on its branch from its old start point."""

    old = require_lane(repo, lane_id, UNSUCCESSFUL, "be retried")
    fresh = not keep_base and restart.wants_fresh_start(repo, repo.store.read(), old)
    kept = None
    if fresh:
        how = f"`orchestree retry {lane_id} --keep-base` continues on its branch"
        kept = restart.retire_branch(repo, lane_id, old, how)
    freed: list[str] = []

    def change(tracker: Tracker) -> None:
        lane = tracker.lanes[lane_id]
        if fresh:
            restart.forget_start(lane)
        lane.status, lane.error, lane.held = "pending", None, None
        lane.max_attempts = max(lane.max_attempts or 1, lane.attempts + 1)
        lane.merge = lane.merge.model_copy(update={"status": None, "conflicts": []})
        waiting = [lane_id]
        while waiting:
            current = waiting.pop()
            for other_id, other in tracker.lanes.items():
                if other.status == "blocked" and current in other.depends_on:
                    other.status, other.error, other.held = "pending", None, None
                    freed.append(other_id)
                    waiting.append(other_id)

    repo.store.update(change, "retry", lane=lane_id, fresh=fresh, kept=kept)
    return Retried(freed, fresh, kept)


def cancel_lane(repo: Repo, lane_id: str) -> str:
    """Stop a running lane's agent (the running orchestrator records it) or cancel a
    pending one. A lane running elsewhere (a Dask worker) is stopped by the orchestrator
    that follows it: this leaves it a request."""

    lane = require_lane(repo, lane_id, {"pending", "running", "blocked"}, "be cancelled")
    if lane.status == "running":
        agent = repo.store.read().agents.get(agent_name(lane_id))
        ident = None
        # A remote lane's pid is a process on its worker, never one of this machine.
        if agent is not None and (agent.handle or "local:").startswith("local:"):
            recorded = procs.Identity.recorded(agent.pid, agent.pid_ticks, agent.boot_id)
            files = launch.local_files(repo.layout, lane_id, lane.attempts)
            ident = launch.supervisor_of(files, agent.pid or 0, recorded)
        if agent and procs.signal_if_ours(ident, signal.SIGTERM):
            pid = ident.pid if ident is not None else agent.pid
            return f"{lane_id}: stopping its agent (pid {pid}); its worktree is kept"
        if agent and agent.handle and not agent.handle.startswith("local:"):
            repo.layout.cancel_requests.mkdir(parents=True, exist_ok=True)
            (repo.layout.cancel_requests / lane_id).write_text(agent.handle, encoding="utf-8")
            where = f" on {lane.host}" if lane.host else ""
            return f"{lane_id}: the orchestrator is stopping its agent{where}; nothing is pushed"
        raise UserError(
            f"lane {lane_id!r} is marked running but its process is gone; "
            "`orchestree execute` will record it"
        )

    def change(tracker: Tracker) -> None:
        tracker.lanes[lane_id].status = "cancelled"

    repo.store.update(change, "cancel", lane=lane_id)
    return f"{lane_id}: cancelled"


def show_log(repo: Repo, lane_id: str, follow: bool, out: Any, raw: bool = False) -> None:
    """Print the lane's log to `out`. The agent wrote it, so its control characters are
    shown as escapes (`visible`), newlines and tabs kept; `raw` writes the bytes as they
    are to `out.buffer`."""
    lane = require_lane(repo, lane_id, set(LANE_STATUSES), "show a log")
    path = repo.layout.log(lane_id)
    if not path.exists():
        out.write(f"lane {lane_id!r} has no log yet (status {lane.status})\n")
        return
    # Incremental: a UTF-8 character split across two reads is still one character.
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(65536)
            if chunk:
                buffer = getattr(out, "buffer", None) if raw else None
                if buffer is not None:
                    out.flush()
                    buffer.write(chunk)
                    buffer.flush()
                elif raw:  # a text-only stream (a test's): the characters, unescaped
                    out.write(decoder.decode(chunk))
                else:
                    out.write(visible(decoder.decode(chunk), keep="\n\t"))
                out.flush()
                continue
            if not follow or repo.store.read().lanes[lane_id].status not in ("running", "pending"):
                return
            time.sleep(0.2)
