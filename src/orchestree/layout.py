"""Where orchestree keeps things in a repository (DESIGN.md §1), in one place.

A `Layout` is made from a repository root and passed in; nothing reads a global.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ORCH_DIR = ".orchestration"
CONFIG_FILE = "orchestree.toml"
DEFAULT_AGENT = "claude"  # `[defaults] agent`: the agent of a lane that names none
GENERATED_DIR = "docs/_generated"
PLAN_FILE = f"{GENERATED_DIR}/execution_plan.json"

# Kept out of every commit: orchestree's own state, the worktrees and the helper each
# worktree gets, and what agents drop on their own account (Aider's history and cache).
# Root-anchored and without a trailing slash, so a FILE named `.orchestration` that an
# agent writes is excluded as well as the folder.
EXCLUDES = ["/.orchestration", "/access_tracker.py"]
# What agents leave in a worktree on their own account; `init` adds these to the
# repository's shared info/exclude so no lane's commit picks them up.
AGENT_EXCLUDES = (".aider*",)
KEPT = "refs/orchestree/kept/"  # + <lane>: the start point of a branch a reset kept


class _Path:
    """A fixed path of a `Layout`: `name` inside the repository root, or inside `parent`
    (another of these). A descriptor, so that `Layout` lists its paths as the tree they
    form and each is still a typed attribute (`layout.tracker`)."""

    def __init__(self, name: str, parent: _Path | None = None) -> None:
        self.name, self.parent = name, parent

    def __get__(self, layout: Layout, owner: type[Layout] | None = None) -> Path:
        base = layout.root if self.parent is None else self.parent.__get__(layout)
        return base / self.name


@dataclass(frozen=True)
class Layout:
    root: Path
    worktree_root: str = ".worktrees"

    # The fixed paths, as the tree they form; the per-lane ones are the methods below.
    orch = _Path(ORCH_DIR)
    tracker = _Path("tracker.json", orch)
    run_lock = _Path("run.lock", orch)
    events = _Path("events.jsonl", orch)
    logs = _Path("logs", orch)
    cancel_requests = _Path("cancel", orch)  # `orchestree cancel` leaves `<lane>` here
    archive = _Path("archive", orch)
    helper = _Path("access_tracker.py", orch)
    # access_tracker.LEDGER_DIR: a folder a sandbox binds read-only as a whole, so a
    # rename in it (the ledger's, this file's) never detaches the bind mid-run
    ledger = _Path("ledger", orch)
    # the digest of a config found valid, and what the light commands need of it
    config_checked = _Path("config.checked", ledger)
    merge_journal = _Path("merge-journal.json", orch)  # a fast-forward under way (publish.py)
    generated = _Path(GENERATED_DIR)
    plan_file = _Path(PLAN_FILE)

    @property
    def worktrees(self) -> Path:
        return (self.root / self.worktree_root).resolve()

    def worktree(self, lane_id: str) -> Path:
        return self.worktrees / f"agent-{lane_id}"

    def log(self, lane_id: str) -> Path:
        return self.logs / f"agent-{lane_id}.log"

    def rel(self, path: Path) -> str:
        """`path` relative to the repository root when inside it, else absolute."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def branch(lane_id: str) -> str:
    return f"lane-{lane_id}"


def agent_name(lane_id: str) -> str:
    return f"agent-{lane_id}"


def results_dir(lane_id: str) -> str:
    return f"{GENERATED_DIR}/{lane_id}"
