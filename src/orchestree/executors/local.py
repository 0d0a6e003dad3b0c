"""The local executor: lanes in worktrees on this machine (DESIGN.md §5-§6).

Each attempt is a per-lane supervisor (`orchestree.supervisor`) started in a session
of its own, so it outlives an orchestrator that crashes and is adopted by the next
one. The handle records the supervisor's pid and start time (pids are reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

from orchestree import git, runner, supervisor
from orchestree.executors import LaneSpec, LaneUpdate
from orchestree.layout import branch
from orchestree.orchestrator import Repo
from orchestree.tracker import is_our_process

POLL_S = 0.005  # a finished lane is noticed within 5 ms (a stat per running lane)


@dataclass
class _Attempt:
    attempt: int
    launched: runner.Launched


def handle_of(lane_id: str, attempt: int, pid: int, pid_started: float) -> str:
    return f"local:{lane_id}:{attempt}:{pid}:{pid_started!r}"


def parse_handle(handle: str) -> tuple[str, int, int, float] | None:
    parts = handle.split(":")
    if len(parts) != 5 or parts[0] != "local":
        return None
    try:
        return parts[1], int(parts[2]), int(parts[3]), float(parts[4])
    except ValueError:
        return None


class LocalExecutor:
    kind = "local"

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.attempts: dict[str, _Attempt] = {}
        self.queued: list[LaneUpdate] = []
        self.cancelled: set[str] = set()
        self.includes: list[str] | None = None  # .worktreeinclude matches, found once
        self.spawner = runner.Spawner()
        self.heads: dict[str, str] = {}  # lane -> head its last finished attempt left

    def submit(self, spec: LaneSpec) -> str:
        lane_id = spec.lane_id
        repo = self.repo
        # The supervisor populates a new worktree at the lane's start commit.
        lane = spec.lane.model_copy(update={"start_commit": spec.lane.start_commit or spec.start})
        new = runner.prepare(repo, lane_id, lane, spec.start)
        includes = self._includes()
        launched = runner.launch(
            repo, lane_id, lane, spec.attempt, spec.port, new, includes, self.spawner, spec.base
        )
        self.attempts[lane_id] = _Attempt(spec.attempt, launched)
        started = LaneUpdate(
            lane_id, spec.attempt, "started", pid=launched.pid, pid_started=launched.pid_started
        )
        self.queued.append(started)
        return handle_of(lane_id, spec.attempt, launched.pid, launched.pid_started)

    def _includes(self) -> list[str]:
        """The `.worktreeinclude` matches, found once: copied into a new worktree and,
        in every attempt, kept out of the lane's leftover commit."""
        if self.includes is None:
            self.includes = runner.include_files(self.repo.root, self.repo.layout.worktrees)
        return self.includes

    def poll(self, timeout: float = 0.0) -> list[LaneUpdate]:
        deadline = time.monotonic() + timeout
        while True:
            updates, self.queued = self.queued, []
            for lane_id, run in list(self.attempts.items()):
                if self._finished(run):
                    del self.attempts[lane_id]
                    updates.append(self._collect(lane_id, run))
            if updates or time.monotonic() >= deadline:
                return updates
            time.sleep(POLL_S)

    @staticmethod
    def _finished(run: _Attempt) -> bool:
        proc = run.launched.process
        if proc is not None:
            return proc.poll() is not None
        if run.launched.result.exists():
            return True
        return not is_our_process(run.launched.pid, run.launched.pid_started)

    def _collect(self, lane_id: str, run: _Attempt) -> LaneUpdate:
        """Commit what the agent left (so no work is lost) and report the outcome."""
        result = runner.read_result(run.launched.result)
        if result is None:
            # The supervisor died (SIGKILL, OOM) without ending its agent: end it now,
            # so a retry never shares the worktree with the previous attempt's agent.
            grace = self.repo.config.defaults.kill_grace_s
            supervisor.end_orphaned_agent(str(run.launched.agent_file), grace)
            result = {
                "reason": "cancelled" if lane_id in self.cancelled else "error",
                "error": "the lane's supervisor ended without an outcome",
            }
        self.cancelled.discard(lane_id)
        head = runner.commit_leftovers(self.repo, lane_id, run.attempt, result, self._includes())
        if head:
            self.heads[lane_id] = head
        code = result.get("exit_code")
        return LaneUpdate(
            lane_id,
            run.attempt,
            "finished",
            reason=str(result.get("reason", "error")),
            exit_code=None if code is None else int(code),
            error=result.get("error"),
            output=runner.log_since(self.repo.layout.log(lane_id), run.launched.log_offset),
            head=head,
            # What the supervisor saw, valid while the head is the one it committed.
            changed=result.get("changed") if head == result.get("head") else None,
            pid=run.launched.pid,
            refs_restored=[str(ref) for ref in result.get("refs_restored") or []],
        )

    def cancel(self, lane_id: str, attempt: int) -> None:
        run = self.attempts.get(lane_id)
        if run is None or run.attempt != attempt:
            return
        self.cancelled.add(lane_id)
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.launched.pid, signal.SIGTERM)

    def fetch(self, lane_id: str) -> str | None:
        """The lane branch is local already: its head as the attempt left it."""
        known = self.heads.pop(lane_id, None)
        return known or git.head_commit(self.repo.root, f"refs/heads/{branch(lane_id)}")

    def reattach(self, handles: list[str]) -> list[LaneUpdate]:
        """Adopt supervisors that still run or left an outcome; report the others gone."""
        updates: list[LaneUpdate] = []
        for handle in handles:
            parsed = parse_handle(handle)
            if parsed is None:
                continue
            lane_id, attempt, pid, started = parsed
            result = self.repo.layout.orch / "runs" / f"{lane_id}.{attempt}.result.json"
            if (pid and is_our_process(pid, started)) or result.exists():
                launched = runner.Launched(pid, started, result, 0, None)
                self.attempts[lane_id] = _Attempt(attempt, launched)
            else:
                grace = self.repo.config.defaults.kill_grace_s
                agent_file = result.with_name(result.name.replace(".result.", ".agent."))
                supervisor.end_orphaned_agent(str(agent_file), grace)
                updates.append(LaneUpdate(lane_id, attempt, "finished", reason="gone"))
        return updates

    def close(self) -> None:
        """End the fork server; supervisors outlive us on purpose (adopted on resume)."""
        self.spawner.close()
