"""The local executor: lanes in worktrees on this machine (DESIGN.md §5-§6).

Each attempt is a per-lane supervisor (`orchestree.executors.supervisor`) started in a session
of its own, so it outlives an orchestrator that crashes and is adopted by the next
one. The handle records the supervisor's identity (`procs.Identity`: pid, start ticks
since boot, boot id; pids are reused, and no clock takes part). An attempt is over
when its supervisor left a result or is gone on two independent signs.
"""

from __future__ import annotations

import functools
import signal
import time
from pathlib import Path

from orchestree import disk, git, procs
from orchestree.errors import GitError
from orchestree.executors import launch
from orchestree.executors.attempt import LaneSpec, LaneUpdate
from orchestree.executors.launch import Launched
from orchestree.layout import branch
from orchestree.repo import Repo

POLL_S = 0.005  # a finished lane is noticed within 5 ms (a stat per running lane)


def handle_of(lane_id: str, attempt: int, ident: procs.Identity | None) -> str:
    """`local:<lane>:<attempt>:<pid>:<ticks>:<boot id>` (pid 0: not known)."""
    return f"local:{lane_id}:{attempt}:{(ident or procs.Identity(0, 0, '-')).as_text()}"


def parse_handle(handle: str) -> tuple[str, int, int, procs.Identity | None] | None:
    """(lane, attempt, pid, identity) of a handle; the identity is None for pid 0 and
    for a handle of the released version (`...:<pid>:<float start time>`), whose
    wall-clock start time is never trusted."""
    parts = handle.split(":")
    if len(parts) not in (5, 6) or parts[0] != "local":
        return None
    try:
        attempt, pid = int(parts[2]), int(parts[3])
        if len(parts) == 5:
            float(parts[4])
    except ValueError:
        return None
    ident = procs.Identity.from_text(":".join(parts[3:])) if len(parts) == 6 else None
    return parts[1], attempt, pid, ident if ident is not None and ident.pid else None


def _missing(path: Path) -> bool:
    return not path.exists()


class LocalExecutor:
    kind = "local"

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.attempts: dict[str, Launched] = {}
        self.queued: list[LaneUpdate] = []
        self.cancelled: set[str] = set()
        self.includes: list[str] | None = None  # .worktreeinclude matches, found once
        self.spawner = launch.Spawner()
        self.spawner.warm()  # an executor is opened to launch lanes: be ready for the first
        self.heads: dict[str, str] = {}  # lane -> head its last finished attempt left
        self.branches: dict[str, str] | None = None  # lane branches at the first submit

    def submit(self, spec: LaneSpec) -> str:
        lane_id = spec.lane_id
        repo = self.repo
        # The supervisor populates a new worktree at the lane's start commit.
        lane = spec.lane.model_copy(update={"start_commit": spec.lane.start_commit or spec.start})
        new = launch.prepare(repo, lane_id, lane, spec.start, self._absent(spec))
        includes = self._includes()
        with disk.writing(repo.layout.orch):  # its prompt, spec and log live there
            launched = launch.launch(
                repo, lane_id, lane, spec.attempt, spec.port, new, includes, self.spawner,
                spec.base,
            )  # fmt: skip
        self.attempts[lane_id] = launched
        started = LaneUpdate(
            lane_id, spec.attempt, "started", pid=launched.pid, pid_identity=launched.identity
        )
        self.queued.append(started)
        return handle_of(lane_id, spec.attempt, launched.identity)

    def _absent(self, spec: LaneSpec) -> bool:
        """Whether a first attempt's branch did not exist when this executor's first
        lane was submitted: one git call for every lane of the run, not one a lane. A
        branch made since by someone else makes the supervisor's `worktree add -b` fail
        that lane; git never overwrites it."""
        if spec.attempt != 1:
            return False  # an earlier attempt of this run may have made it
        if self.branches is None:
            self.branches = git.ref_heads(self.repo.root, "refs/heads/lane-*")
        return branch(spec.lane_id) not in self.branches

    def _includes(self) -> list[str]:
        """The `.worktreeinclude` matches, found once: copied into a new worktree and,
        in every attempt, kept out of the lane's leftover commit."""
        if self.includes is None:
            self.includes = launch.include_files(self.repo.root, self.repo.layout.worktrees)
        return self.includes

    def poll(self, timeout: float = 0.0) -> list[LaneUpdate]:
        deadline = time.monotonic() + timeout
        while True:
            updates, self.queued = self.queued, []
            for lane_id, launched in list(self.attempts.items()):
                if self._finished(launched):
                    del self.attempts[lane_id]
                    updates.append(self._collect(lane_id, launched))
            if updates or time.monotonic() >= deadline:
                return updates
            time.sleep(POLL_S)

    @staticmethod
    def _finished(launched: Launched) -> bool:
        """Over when the supervisor left its result, or is gone on two signs: its exit
        (our child's status, its pidfd, or two identity reads) and no result."""
        proc, result = launched.process, launched.files.result
        if proc is not None:
            return proc.poll() is not None
        if result.exists():
            return True
        return procs.confirm_gone(
            launched.identity, launched.pidfd, other_sign=lambda: not result.exists()
        )

    def _collect(self, lane_id: str, launched: Launched) -> LaneUpdate:
        """Commit what the agent left (so no work is lost) and report the outcome."""
        lost = "cancelled" if lane_id in self.cancelled else "error"
        result = launch.outcome(launched, self.repo.config.defaults.kill_grace_s, lost)
        self.cancelled.discard(lane_id)
        try:
            head = launch.commit_leftovers(self.repo, lane_id, launched, result)
        except GitError as exc:  # this lane's failure, never the whole run's
            head, result.commit_error = None, str(exc)
        if result.commit_error:
            result.reason = "error"
            result.error = f"its work could not be committed: {result.commit_error}"
        if head:
            self.heads[lane_id] = head
        output = launch.log_since(self.repo.layout.log(lane_id), launched.log_offset)
        return result.update(lane_id, launched.attempt, head, output)

    def cancel(self, lane_id: str, attempt: int) -> None:
        launched = self.attempts.get(lane_id)
        if launched is None or launched.attempt != attempt:
            return
        self.cancelled.add(lane_id)
        if launched.process is not None:  # our child: its pid cannot be reused yet
            launched.process.send_signal(signal.SIGTERM)
        else:
            procs.signal_if_ours(launched.identity, signal.SIGTERM, launched.pidfd)

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
            lane_id, attempt, pid, ident = parsed
            files = launch.local_files(self.repo.layout, lane_id, attempt)
            unrecorded = pid == 0  # started, perhaps, before the tracker said so
            ident = launch.supervisor_of(files, pid, ident)
            if unrecorded:
                pid = ident.pid if ident is not None else 0
            gone = procs.confirm_gone(ident, other_sign=functools.partial(_missing, files.result))
            if not gone:
                pidfd = procs.open_pidfd(ident) if ident is not None else None
                self.attempts[lane_id] = Launched(attempt, pid, ident, files, 0, None, pidfd)
                if unrecorded and ident is not None:  # the tracker records it now
                    updates.append(LaneUpdate(lane_id, attempt, "started", pid=pid,
                                              pid_identity=ident))  # fmt: skip
            else:
                grace = self.repo.config.defaults.kill_grace_s
                procs.end_orphaned_agent(files.agent, grace)
                updates.append(LaneUpdate(lane_id, attempt, "finished", reason="gone"))
        return updates

    def close(self) -> None:
        """End the fork server; supervisors outlive us on purpose (adopted on resume)."""
        self.spawner.close()
