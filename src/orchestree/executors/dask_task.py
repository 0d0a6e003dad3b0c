"""One attempt of one lane as a Dask task, on whichever worker runs it (DESIGN.md §12).

clone (per-host reference cache) → checkout `lane-<id>` at its start → claim the
attempt on the remote → run the agent under the supervisor, started by the same
launcher as a local lane's (`launch.attempt_spec`, `launch.start`, `launch.outcome`),
which also commits what the agent left, in the clone → push the branch with a lease,
and the `AttemptResult` beside it. Exactly-once guards measured
in ../shared/research/dask-executor.md: a run that finds the attempt claimed stops
before the agent; a worker that starts closing (retired, scaled down) ends its agent
and pushes nothing; a cancel `Event` is checked every 0.5 s; the supervisor ends the
agent's tree when this worker dies (stdin EOF). Started, output and progress go to
the orchestrator as worker events; it writes the tracker, never the task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestree import access_tracker, agents, git
from orchestree.executors import launch, remote
from orchestree.executors.attempt import AttemptFiles, AttemptResult, LaneSpec
from orchestree.layout import EXCLUDES, branch
from orchestree.worktree_guard import ORCH_PATHS

KEEP_OUT = [*ORCH_PATHS, "access_tracker.py"]  # never in a lane's leftover commit

STOPPING = frozenset({"closing", "closing_gracefully", "closed", "stopping", "stopped", "failed"})
TICK_S = 0.1
CHECK_S = 0.5  # cancel event, output and progress
OUTPUT_CHUNK = 32 * 1024
RESULT_OUTPUT = 64 * 1024
ORPHAN_GRACE_S = 1.0  # TERM, then KILL: an orphaned tree is gone within seconds


@dataclass(frozen=True)
class RemoteTask:
    """What the Dask task gets: the orchestrator's order and where to push."""

    spec: LaneSpec
    url: str
    key: str
    topic: str
    run: str


def claim_ref(run: str, lane_id: str, attempt: int) -> str:
    return f"refs/orchestree/claims/{run}/{lane_id}/{attempt}"


def result_ref(run: str, lane_id: str, attempt: int) -> str:
    return f"refs/orchestree/results/{run}/{lane_id}/{attempt}"


def cancel_event(key: str) -> str:
    return f"orchestree-cancel-{key}"


def cache_dir(url: str) -> Path:
    """The per-host reference cache for `url`: $ORCHESTREE_CACHE_DIR or ~/.cache."""
    root = os.environ.get("ORCHESTREE_CACHE_DIR") or str(Path.home() / ".cache" / "orchestree")
    return Path(root) / "git" / (hashlib.sha1(url.encode()).hexdigest()[:16] + ".git")


def run_lane(task: RemoteTask) -> AttemptResult:
    """The Dask task. Returns the attempt's outcome; never raises for a lane's failure."""
    from distributed import get_worker

    attempt = RemoteAttempt(task, get_worker())
    try:
        return attempt.run()
    except Exception as exc:
        return attempt.result("error", error=str(exc) or repr(exc))
    finally:
        shutil.rmtree(attempt.root, ignore_errors=True)


class RemoteAttempt:
    """One attempt as its Dask task runs it on a worker, in a clone of its own."""

    def __init__(self, task: RemoteTask, worker: Any) -> None:
        from distributed import Event

        self.task, self.spec, self.worker = task, task.spec, worker
        self.cancel = Event(cancel_event(task.key))
        self.host = socket.gethostname()
        self.timings: dict[str, float] = {}
        self.root = Path(worker.local_directory) / "orchestree" / f"{task.key}-{os.getpid()}"
        self.clone = self.root / "repo"
        self.output = ""
        self.offset = 0  # bytes of the agent's log already streamed
        self.last_progress: Any = None

    def emit(self, kind: str, **fields: Any) -> None:
        spec = self.spec
        message = {"kind": kind, "key": self.task.key, "lane": spec.lane_id}
        self.worker.log_event(self.task.topic, {**message, "attempt": spec.attempt, **fields})

    def result(self, reason: str, **fields: Any) -> AttemptResult:
        return AttemptResult(reason, host=self.host, worker=self.worker.address,
                             timings=self.timings, output=self.output, **fields)  # fmt: skip

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = round(time.monotonic() - began, 4)

    def stopping(self) -> bool:
        return str(getattr(self.worker.status, "name", self.worker.status)) in STOPPING

    def run(self) -> AttemptResult:
        spec, task = self.spec, self.task
        name = branch(spec.lane_id)
        if self.cancel.is_set():
            return self.result("cancelled")
        with self.step("clone"):
            cache = cache_dir(task.url)
            remote.refresh_cache(cache, task.url, [c for c in (spec.start, spec.expected) if c])
            remote.clone(task.url, cache, self.clone)
        with self.step("checkout"):
            git.run("checkout", "-q", "-b", name, spec.expected or spec.start, cwd=self.clone)
            git.run("config", "user.name", spec.identity[0], cwd=self.clone)
            git.run("config", "user.email", spec.identity[1], cwd=self.clone)
            git.add_excludes(self.clone, [*EXCLUDES, *agents.AGENT_EXCLUDES])
        with self.step("claim"):
            ref = claim_ref(task.run, spec.lane_id, spec.attempt)
            note = f"orchestree claim {task.key}: {self.worker.address} on {self.host}"
            if not remote.claim(self.clone, task.url, ref, f"{note} ({time.time_ns()})"):
                return self.result("claim-conflict", error=f"{ref} is held by another run")
        if self.stopping():
            return self.result("abandoned")
        with self.step("agent"):
            outcome, override = self.run_agent()
        # The supervisor committed what the agent left: that step is counted apart.
        if "commit" in outcome.timings:
            self.timings["commit"] = outcome.timings["commit"]
            self.timings["agent"] = round(self.timings["agent"] - self.timings["commit"], 4)
        reason, code, error = override or outcome.reason, outcome.exit_code, outcome.error
        if reason not in ("exited", "timeout", "setup-failed"):
            return self.result(reason, exit_code=code, error=error)
        if not outcome.committed:
            problem = f"its work could not be committed: {outcome.commit_error}"
            return self.result("error", exit_code=code, error=problem)
        with self.step("push"):
            record = AttemptResult(reason, exit_code=code, error=error, host=self.host,
                                   worker=self.worker.address)  # fmt: skip
            text = f"orchestree result {task.key}\n\n{record.to_json()}\n"
            ref = result_ref(task.run, spec.lane_id, spec.attempt)
            refused = remote.push_lane(self.clone, task.url, name, spec.expected, ref, text)
        if refused:
            return self.result("error", exit_code=code, error=f"push of {name} refused: {refused}")
        return self.result(reason, exit_code=code, error=error, committed=True,
                           head=outcome.head, changed=outcome.changed)  # fmt: skip

    def run_agent(self) -> tuple[AttemptResult, str | None]:
        """Run the agent under the supervisor; stop it on cancel or a closing worker."""
        spec, lane = self.spec, self.spec.lane
        config = spec.config
        tracker = self.root / "tracker.json"
        _scratch_tracker(tracker, spec)
        shutil.copyfile(access_tracker.__file__, self.clone / "access_tracker.py")
        # The copy the prompt names and the Claude preset pre-approves: outside the
        # clone, read-only, so the agent cannot change what the approval runs.
        helper = self.root / "access_tracker.py"
        helper.unlink(missing_ok=True)
        shutil.copyfile(access_tracker.__file__, helper)
        helper.chmod(0o555)
        name = branch(spec.lane_id)
        ctx = agents.LaunchContext(spec.lane_id, lane, self.clone, name, tracker,
                                   self.root / "prompt.md")  # fmt: skip
        prompt = lane.prompt or agents.build_prompt(ctx)
        log = self.root / "agent.log"
        _, sup = launch.attempt_spec(config, ctx, prompt, spec.port, spec.attempt, log)
        sup = dataclasses.replace(
            sup,
            setup=config.worktree.setup,
            die_with_parent=True,  # its stdin is our pipe: EOF when this worker dies
            root=str(self.clone),
            clone=True,
            start_commit=spec.start,
            keep_out=KEEP_OUT,
        )
        launched = launch.start(sup, AttemptFiles(self.root), 0, launch.Spawner(fork_server=False))
        proc = launched.process
        assert proc is not None  # die_with_parent: always our child
        self.emit("started", host=self.host, worker=self.worker.address, pid=proc.pid)
        override = self._watch(proc, log, tracker)
        proc.wait()
        if proc.stdin:
            proc.stdin.close()
        self._stream(log)
        # A supervisor that died (SIGKILL, OOM) without ending the agent: its whole
        # tree ends here, a `setsid` child too (by the tree's token); the lane is lost.
        return launch.outcome(launched, ORPHAN_GRACE_S, lost="lost"), override

    def _watch(self, proc: subprocess.Popen[bytes], log: Path, tracker: Path) -> str | None:
        override: str | None = None
        next_check = 0.0
        while proc.poll() is None:
            if override is None and self.stopping():
                override = "abandoned"
                proc.terminate()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CHECK_S
                if override is None and self.cancel.is_set():
                    override = "cancelled"
                    proc.terminate()
                self._stream(log)
                self._progress(tracker)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(TICK_S)
        return override

    def _stream(self, log: Path) -> None:
        while True:
            raw = b""
            with contextlib.suppress(FileNotFoundError), log.open("rb") as fh:
                fh.seek(self.offset)
                raw = fh.read(OUTPUT_CHUNK)
            if not raw:
                return
            self.offset += len(raw)
            chunk = raw.decode("utf-8", "replace")
            self.output = (self.output + chunk)[-RESULT_OUTPUT:]
            self.emit("output", text=chunk)

    def _progress(self, tracker: Path) -> None:
        with contextlib.suppress(OSError, ValueError, access_tracker.TrackerFileError):
            lane = access_tracker.read(str(tracker))["lanes"][self.spec.lane_id]
            seen = (lane.get("progress"), lane.get("data"))
            if seen not in (self.last_progress, (None, {})):
                self.last_progress = seen
                self.emit("progress", progress=seen[0], data=seen[1])


def _scratch_tracker(path: Path, spec: LaneSpec) -> None:
    """A tracker of this lane alone, where the agent reports progress (the seed's
    contract); the task forwards what it writes to the orchestrator's tracker."""
    lane = spec.lane.model_dump(mode="json")
    data = {"version": "1.0.0", "phase": 3, "status": "running", "repo": str(path.parent),
            "base_branch": "", "base_commit": spec.base, "agents": {},
            "lanes": {spec.lane_id: {**lane, "status": "running"}}}  # fmt: skip
    access_tracker.write_atomic(str(path), data)
