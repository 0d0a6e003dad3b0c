"""Where orchestree keeps things in a repository (DESIGN.md §1), in one place.

A `Layout` is made from a repository root and passed in; nothing reads a global.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ORCH_DIR = ".orchestration"
CONFIG_FILE = "orchestree.toml"
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


@dataclass(frozen=True)
class Layout:
    root: Path
    worktree_root: str = ".worktrees"

    @property
    def orch(self) -> Path:
        return self.root / ORCH_DIR

    @property
    def tracker(self) -> Path:
        return self.orch / "tracker.json"

    @property
    def run_lock(self) -> Path:
        return self.orch / "run.lock"

    @property
    def events(self) -> Path:
        return self.orch / "events.jsonl"

    @property
    def logs(self) -> Path:
        return self.orch / "logs"

    @property
    def cancel_requests(self) -> Path:
        """`orchestree cancel` leaves `<lane>` here for the running orchestrator."""
        return self.orch / "cancel"

    @property
    def archive(self) -> Path:
        return self.orch / "archive"

    @property
    def helper(self) -> Path:
        return self.orch / "access_tracker.py"

    @property
    def worktrees(self) -> Path:
        return (self.root / self.worktree_root).resolve()

    @property
    def generated(self) -> Path:
        return self.root / GENERATED_DIR

    @property
    def plan_file(self) -> Path:
        return self.root / PLAN_FILE

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
