"""The repository-level operations: init, lanes, tracker access, reset.

Plain functions that take a repository path and options and return results; they
never see Typer objects. The execution, merge and probe phases live in their own
modules and start from `open_repo`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestree import access_tracker, git
from orchestree.access_tracker import LANE_TRANSITIONS as LANE_STATUSES
from orchestree.config import Config, load_config
from orchestree.errors import EnvironmentRefused, UserError
from orchestree.layout import Layout
from orchestree.models import (
    Lane,
    LaneInput,
    Tracker,
    check_graph,
    check_lane_id,
    describe_validation_error,
)
from orchestree.tracker import TrackerStore

# Kept out of every commit: orchestree's own state, the worktrees and the helper each
# worktree gets, and what agents drop on their own account (Aider's history and cache).
EXCLUDES = ["/.orchestration/", "/access_tracker.py"]


@dataclass(frozen=True)
class Repo:
    """An initialised repository: where things are, its config and its tracker."""

    layout: Layout
    config: Config
    store: TrackerStore

    @property
    def root(self) -> Path:
        return self.layout.root


def find_root(path: Path) -> Path:
    return git.repo_root(path.resolve())


def open_repo(path: Path, must_exist: bool = True) -> Repo:
    root = find_root(path)
    config = load_config(root)
    layout = Layout(root, config.worktree.root)
    store = TrackerStore(layout.tracker)
    if must_exist and not store.exists():
        raise UserError(f"{root} is not initialised; run `orchestree init` there first")
    return Repo(layout, config, store)


@dataclass(frozen=True)
class InitResult:
    repo: Repo
    created: bool
    excludes_added: list[str]


def init(path: Path) -> InitResult:
    """Create `.orchestration/` and an empty tracker; idempotent."""
    repo = open_repo(path, must_exist=False)
    root, layout = repo.root, repo.layout
    base_commit = git.head_commit(root)
    if base_commit is None:
        raise EnvironmentRefused(
            f"{root} has no commits yet; make a first commit, then run `orchestree init`"
        )
    if repo.store.exists():
        repo.store.read()  # refuses a torn or newer tracker before anything changes
    base_branch = repo.config.defaults.base_branch or git.current_branch(root)
    if base_branch is None:
        raise EnvironmentRefused(
            f"{root} has a detached HEAD; check out the branch lanes should merge into "
            "(or set [defaults] base_branch in orchestree.toml)"
        )
    if git.head_commit(root, f"refs/heads/{base_branch}") is None:
        raise UserError(f"base branch {base_branch!r} does not exist in {root}")
    layout.logs.mkdir(parents=True, exist_ok=True)
    worktree_excl = f"/{repo.config.worktree.root.strip('/')}/"
    from orchestree.agents import AGENT_EXCLUDES

    added = git.add_excludes(root, [*EXCLUDES, worktree_excl, *AGENT_EXCLUDES])
    install_helper(layout)
    if repo.store.exists():
        return InitResult(repo, created=False, excludes_added=added)
    repo.store.create(
        Tracker(
            repo=str(root),
            base_branch=base_branch,
            base_commit=git.head_commit(root, f"refs/heads/{base_branch}") or base_commit,
        )
    )
    return InitResult(repo, created=True, excludes_added=added)


def install_helper(layout: Layout) -> None:
    """Place the stdlib helper agents call, refreshed so it matches this version."""
    source = Path(access_tracker.__file__)
    target = layout.helper
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
        target.chmod(0o755)


def parse_lane_json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise UserError(f'{what} must be a JSON object, e.g. \'{{"tasks": ["..."]}}\'')
    return data


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
                    raise UserError(
                        f"lane {lane_id!r} has started ({existing.status}); "
                        "only a lane that has not started can be replaced"
                    )
            lane = Lane(**spec.model_dump(), order=existing.order if existing else order)
            if existing is None:
                order += 1
            tracker.lanes[lane_id] = lane
        check_graph({k: v.depends_on for k, v in tracker.lanes.items()})

    repo.store.update(change, "add-lane", lanes=sorted(checked))
    return list(checked)


def tracker_get(repo: Repo, key_path: str | None) -> Any:
    data: Any = repo.store.read_raw()
    if not key_path:
        return data
    for part in key_path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise UserError(f"the tracker has no {key_path!r} (stopped at {part!r})")
    return data


def reset(repo: Repo, force: bool = False, say: Callable[[str], None] = print) -> Path:
    """Clean up (the same safety rules as `cleanup`), archive the tracker, start afresh.

    Unmerged lane branches and worktrees with uncommitted changes survive unless
    `force`; the archived tracker still names them. `say` hears what cleanup did.
    """
    from orchestree.cleanup import cleanup

    old = repo.store.read()
    for line in cleanup(repo, force=force, say=say).lines():
        say(line)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    archived = repo.store.archive(repo.layout.archive, stamp)
    base_commit = git.head_commit(repo.root, f"refs/heads/{old.base_branch}") or old.base_commit
    repo.store.replace(
        Tracker(repo=old.repo, base_branch=old.base_branch, base_commit=base_commit),
        "reset",
    )
    return archived


def require_lane(repo: Repo, lane_id: str, statuses: set[str], verb: str) -> Lane:
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


RETRYABLE = {"failed", "cancelled", "blocked", "conflict", "verify_failed"}


def retry_lane(repo: Repo, lane_id: str) -> list[str]:
    """Make a finished-badly lane pending again, with the lanes blocked behind it."""
    require_lane(repo, lane_id, RETRYABLE, "be retried")
    freed: list[str] = []

    def change(tracker: Tracker) -> None:
        lane = tracker.lanes[lane_id]
        lane.status, lane.error = "pending", None
        lane.max_attempts = max(lane.max_attempts or 1, lane.attempts + 1)
        lane.merge = lane.merge.model_copy(update={"status": None, "conflicts": []})
        waiting = [lane_id]
        while waiting:
            current = waiting.pop()
            for other_id, other in tracker.lanes.items():
                if other.status == "blocked" and current in other.depends_on:
                    other.status, other.error = "pending", None
                    freed.append(other_id)
                    waiting.append(other_id)

    repo.store.update(change, "retry", lane=lane_id)
    return freed


def cancel_lane(repo: Repo, lane_id: str) -> str:
    """Stop a running lane's agent (the running orchestrator records it) or cancel a
    pending one. A lane running elsewhere (a Dask worker) is stopped by the orchestrator
    that follows it: this leaves it a request."""
    import signal

    from orchestree import procs
    from orchestree.layout import agent_name

    lane = require_lane(repo, lane_id, {"pending", "running", "blocked"}, "be cancelled")
    if lane.status == "running":
        agent = repo.store.read().agents.get(agent_name(lane_id))
        ident = None
        if agent is not None and agent.pid:
            ident = procs.Identity.recorded(agent.pid, agent.pid_ticks, agent.boot_id)
            if agent.pid_ticks is None:  # recorded by the released version: no ticks
                ident = procs.supervisor_identity(agent.pid)
        if agent and procs.signal_if_ours(ident, signal.SIGTERM):
            return f"{lane_id}: stopping its agent (pid {agent.pid}); its worktree is kept"
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


def show_log(repo: Repo, lane_id: str, follow: bool, out: Any) -> None:
    import time

    lane = require_lane(repo, lane_id, set(LANE_STATUSES), "show a log")
    path = repo.layout.log(lane_id)
    if not path.exists():
        out.write(f"lane {lane_id!r} has no log yet (status {lane.status})\n")
        return
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(65536)
            if chunk:
                out.write(chunk.decode("utf-8", "replace"))
                out.flush()
                continue
            if not follow or repo.store.read().lanes[lane_id].status not in ("running", "pending"):
                return
            time.sleep(0.2)
