"""The Dask executor: lanes as tasks on a Dask distributed cluster (DESIGN.md §12).

An existing scheduler (`[executor] scheduler`) or a `LocalCluster` of `workers`
processes. Workers clone from the shared `remote` and push `lane-<id>` back; `fetch`
brings the branch into this repository so merging works as for local lanes.
Exactly once (../shared/research/dask-executor.md): the scheduler must have
`allowed-failures: 0` (set here for a LocalCluster, checked on an existing one); each
attempt is one explicit key with `pure=False` and no engine retries; futures are
published so a restarted orchestrator reattaches; the task's own guards live in
`dask_task.py`.
"""

from __future__ import annotations

import logging
import queue
import re
import time
from typing import Any

from orchestree import git
from orchestree.errors import EnvironmentRefused, UserError
from orchestree.executors import remote
from orchestree.executors.attempt import AttemptResult, ContractError, LaneSpec, LaneUpdate
from orchestree.executors.dask_task import RemoteTask, cancel_event, result_ref, run_lane
from orchestree.layout import branch
from orchestree.repo import Repo

# After a worker died, its agent ends within the supervisor's poll period plus a
# 1 s grace (stdin EOF): hold the news that long, so a retry never overlaps it.
LOST_HOLD_S = 2.0
TICK_S = 0.05
_KEY = re.compile(r"^lane-(?P<lane>.+)-a(?P<attempt>\d+)-(?P<run>[0-9a-f]{8})$")


def task_key(lane_id: str, attempt: int, run: str) -> str:
    # The run id keeps a reset tracker's attempt 1 from meeting an old attempt 1.
    return f"lane-{lane_id}-a{attempt}-{run}"


def _allowed_failures(dask_scheduler: Any = None) -> int:
    return int(dask_scheduler.allowed_failures)


class DaskExecutor:
    kind = "dask"

    def __init__(self, repo: Repo, run: str, base: str) -> None:
        import dask
        from distributed import Client, LocalCluster

        self.repo, self.run = repo, run
        settings = repo.config.executor
        self.url = remote.remote_url(repo.root, settings.remote)
        self.topic = f"orchestree-{run}"
        self.cluster: Any = None
        if settings.scheduler:
            try:
                self.client: Any = Client(settings.scheduler, timeout="10s")
            except OSError as exc:
                raise EnvironmentRefused(
                    f"cannot reach the Dask scheduler at {settings.scheduler} ({exc}); "
                    "start it or fix [executor] scheduler"
                ) from None
            allowed = self.client.run_on_scheduler(_allowed_failures)
            if allowed != 0:
                self.client.close()
                raise EnvironmentRefused(
                    f"the Dask scheduler at {settings.scheduler} has "
                    f"distributed.scheduler.allowed-failures = {allowed}, so it would run an "
                    "agent again when its worker dies; start it with "
                    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 (or set "
                    "distributed.scheduler.allowed-failures: 0 in its Dask config)"
                )
        else:
            dask.config.set({"distributed.scheduler.allowed-failures": 0})
            self.cluster = LocalCluster(
                n_workers=settings.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                local_directory=str(repo.layout.orch / "dask"),
            )
            self.client = Client(self.cluster)
        self.events: queue.Queue[Any] = queue.Queue()
        self.client.subscribe_topic(self.topic, self.events.put)
        remote.push_start(repo.root, self.url, base)
        self.published = {base}
        self.remote_lanes = remote.heads(repo.root, self.url, "refs/heads/lane-*")
        self.futures: dict[str, tuple[str, int, Any]] = {}  # key -> lane, attempt, future
        self.started: set[str] = set()
        self.held: list[tuple[float, LaneUpdate]] = []
        self.done: list[str] = []  # keys reported finished, released at the next poll

    def submit(self, spec: LaneSpec) -> str:
        name = branch(spec.lane_id)
        if spec.expected is None and f"refs/heads/{name}" in self.remote_lanes:
            raise UserError(
                f"branch {name} already exists on {self.url} with commits orchestree did "
                "not make; rename or delete it there — it is never overwritten"
            )
        if spec.start not in self.published:
            remote.push_start(self.repo.root, self.url, spec.start)
            self.published.add(spec.start)
        key = task_key(spec.lane_id, spec.attempt, self.run)
        task = RemoteTask(spec, self.url, key, self.topic, self.run)
        future = self.client.submit(run_lane, task, key=key, pure=False, retries=0)
        self.client.publish_dataset(future, name=key)
        self.futures[key] = (spec.lane_id, spec.attempt, future)
        return f"dask:{key}"

    def poll(self, timeout: float = 0.0) -> list[LaneUpdate]:
        self._release()
        deadline = time.monotonic() + timeout
        while True:
            # Futures first: the events a task logged before it returned are queued by
            # the time its future shows done (one stream, in order).
            done = [key for key, (_, _, future) in self.futures.items() if future.done()]
            updates = self._drain()
            for key in done:
                lane_id, attempt, future = self.futures.pop(key)
                self._finished(lane_id, attempt, future)
            now = time.monotonic()
            updates += [u for t, u in self.held if t <= now]
            self.held = [(t, u) for t, u in self.held if t > now]
            if updates or now >= deadline:
                self.done += [task_key(u.lane_id, u.attempt, self.run) for u in updates
                              if u.kind == "finished"]  # fmt: skip
                return updates
            time.sleep(TICK_S)

    def _drain(self) -> list[LaneUpdate]:
        updates: list[LaneUpdate] = []
        while True:
            try:
                _, msg = self.events.get_nowait()
            except queue.Empty:
                return updates
            update = self._from_event(msg)
            if update is not None:
                updates.append(update)

    def _from_event(self, msg: dict[str, Any]) -> LaneUpdate | None:
        key = msg.get("key", "")
        if key not in self.futures:
            return None  # an attempt already reported, or another run's
        lane_id, attempt, _ = self.futures[key]
        kind = msg.get("kind")
        if kind == "started":
            self.started.add(key)
            return LaneUpdate(lane_id, attempt, "started", host=msg.get("host"),
                              worker=msg.get("worker"), pid=msg.get("pid"))  # fmt: skip
        if kind == "output":
            return LaneUpdate(lane_id, attempt, "output", output=str(msg.get("text", "")))
        if kind == "progress":
            return LaneUpdate(lane_id, attempt, "progress", progress=msg.get("progress"),
                              data=msg.get("data"))  # fmt: skip
        return None

    def _finished(self, lane_id: str, attempt: int, future: Any) -> None:
        if future.status == "finished":
            self._settle(lane_id, attempt, future.result())
        elif future.status == "cancelled":
            self._settle(lane_id, attempt, AttemptResult("cancelled"))
        else:
            exc = future.exception()
            lost = type(exc).__name__ == "KilledWorker"
            error = None if lost else repr(exc)
            self._settle(lane_id, attempt, AttemptResult("lost" if lost else "error", error=error))

    def _settle(self, lane_id: str, attempt: int, got: AttemptResult) -> None:
        """Queue the `finished` update; held a while when the worker was lost."""
        if got.reason in ("lost", "claim-conflict"):
            # The remote is the record: the attempt may have finished and pushed before
            # its worker died, or elsewhere. Only then is its result trusted.
            pushed = self._pushed_result(lane_id, attempt)
            if pushed is None:
                update = got.update(lane_id, attempt, got.head, got.output)
                self.held.append((time.monotonic() + LOST_HOLD_S, update))
                return
            got = pushed
        self.held.append((0.0, got.update(lane_id, attempt, got.head, got.output)))

    def _pushed_result(self, lane_id: str, attempt: int) -> AttemptResult | None:
        """The result an attempt pushed beside its branch, with the head it pushed."""
        ref = result_ref(self.run, lane_id, attempt)
        if remote.fetch_ref(self.repo.root, self.url, ref) is None:
            return None
        text = remote.message(self.repo.root, ref)
        try:
            record = AttemptResult.from_json(text.split("\n\n", 1)[-1])
        except ContractError as exc:
            return AttemptResult("error", error=f"{ref}: {exc}")
        record.head = git.head_commit(self.repo.root, f"{ref}^1")
        return record

    def cancel(self, lane_id: str, attempt: int) -> None:
        from distributed import Event

        key = task_key(lane_id, attempt, self.run)
        Event(cancel_event(key), client=self.client).set()
        if key in self.futures and key not in self.started:
            self.futures[key][2].cancel()  # not started yet: the engine may drop it

    def fetch(self, lane_id: str) -> str | None:
        name = f"refs/heads/{branch(lane_id)}"
        return remote.fetch_ref(self.repo.root, self.url, name)

    def reattach(self, handles: list[str]) -> list[LaneUpdate]:
        """Follow published attempts again; replay their started and progress events."""
        for handle in handles:
            key = handle.removeprefix("dask:")
            match = _KEY.match(key)
            if match is None:
                continue
            lane_id, attempt = match["lane"], int(match["attempt"])
            try:
                self.futures[key] = (lane_id, attempt, self.client.get_dataset(key))
            except KeyError:  # the scheduler never had it, or restarted: it is lost
                gone = AttemptResult("lost", error="the Dask scheduler no longer knows its task")
                self._settle(lane_id, attempt, gone)
        replayed = [self._from_event(msg) for _, msg in self.client.get_events(self.topic)]
        return [u for u in replayed if u is not None and u.kind != "output"]

    def _release(self) -> None:
        """Forget attempts the orchestrator has recorded, so the scheduler drops them."""
        for key in self.done:
            self.client.unpublish_dataset(key)
        self.done = []

    def close(self) -> None:
        try:
            self._release()
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
