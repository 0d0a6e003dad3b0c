"""One attempt's contract between the orchestrator and an executor (DESIGN.md §12).

The orchestrator hands an executor a `LaneSpec` and gets a handle it keeps in the
tracker; it then polls for `LaneUpdate`s (started, output, progress, finished) and
records them: it stays the tracker's only writer. An executor never decides a second
attempt: that is the orchestrator's decision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from orchestree.config import Config
from orchestree.models import Lane
from orchestree.procs import Identity

UpdateKind = Literal["started", "output", "progress", "finished"]

# Why an attempt ended. `exited` and `timeout` come from the agent's own run; the
# others mean the agent did not finish its work.
REASONS = (
    "exited",  # the agent exited by itself; its exit code and output decide
    "timeout",  # the lane's deadline passed; the agent's tree was ended
    "cancelled",  # `orchestree cancel` or Ctrl-C
    "interrupted",  # the supervisor got SIGINT
    "parent-died",  # the supervisor's parent (a Dask worker) went away
    "setup-failed",  # `[worktree] setup` failed
    "error",  # the attempt could not run (a git step or the supervisor failed)
    "gone",  # its process vanished without an outcome (the orchestrator was stopped)
    "lost",  # the Dask worker running it died
    "abandoned",  # the Dask worker was closing (retired, scaled down): agent ended
    "claim-conflict",  # another run holds this attempt's claim: this run stopped
    "untrusted",  # the agent subverted its worktree (`worktree_guard`): nothing committed
)
RETRY_REASONS = frozenset({"gone", "lost", "abandoned", "claim-conflict", "parent-died"})


@dataclass(frozen=True)
class LaneSpec:
    """Everything an executor needs to run one attempt of one lane."""

    lane_id: str
    attempt: int
    lane: Lane
    config: Config
    base: str  # the run's base commit
    start: str  # the base with the lane's dependencies merged in
    expected: str | None  # the lane branch a retry continues from (the push lease)
    port: int
    identity: tuple[str, str]  # git user.name, user.email for commits made for the lane
    run_setup: bool = True


@dataclass(frozen=True)
class LaneUpdate:
    """Something that happened to a submitted attempt."""

    lane_id: str
    attempt: int
    kind: UpdateKind
    reason: str | None = None  # finished: one of REASONS
    exit_code: int | None = None
    error: str | None = None
    output: str = ""  # finished: the attempt's output (tail); output: a new chunk
    head: str | None = None  # finished: the lane branch's head after the attempt
    changed: list[str] | None = None  # finished: files changed since the start, if known
    host: str | None = None
    worker: str | None = None
    pid: int | None = None
    pid_identity: Identity | None = None  # started: the local supervisor's identity
    progress: Any = None
    data: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    refs_restored: list[str] = field(default_factory=list)  # finished: see sandbox.py


class LaneExecutor(Protocol):
    kind: str

    def submit(self, spec: LaneSpec) -> str:
        """Start the attempt; return a handle the tracker keeps (for `reattach`)."""
        ...

    def poll(self, timeout: float = 0.0) -> list[LaneUpdate]:
        """Updates since the last poll; waits up to `timeout` s for the first one."""
        ...

    def cancel(self, lane_id: str, attempt: int) -> None:
        """Stop the attempt; its `finished` update arrives through `poll`."""
        ...

    def fetch(self, lane_id: str) -> str | None:
        """Make `lane-<id>` a local branch (a no-op locally); return its head."""
        ...

    def reattach(self, handles: list[str]) -> list[LaneUpdate]:
        """After an orchestrator restart: follow these attempts again."""
        ...

    def close(self) -> None: ...


def run_id(tracker_repo: str, created_at: str) -> str:
    """A short id of this tracker's run: stable across restarts, new after `reset`."""
    return hashlib.sha1(f"{tracker_repo}\0{created_at}".encode()).hexdigest()[:8]
