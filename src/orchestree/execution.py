"""Phase 3, execute: run pending lanes in DAG order, in parallel, resumably.

One orchestrator at a time holds `.orchestration/run.lock` (runlock.py). The loop asks
the scheduler which lanes may start, submits them to the executor (`executors/`: local
worktrees or a Dask cluster) and records every update it reports; it is the only
writer of lane outcomes. After a crash, `execute` again resumes: the executor
reattaches to attempts that still run or finished meanwhile, and one whose process is
gone is failed as interrupted and retried if attempts remain. Ctrl-C ends the agents,
marks their lanes `cancelled` and keeps their worktrees.

One lane's attempt, from here and back (executors/attempt.py has the contracts):
`_start` claims the lane and submits a `LaneSpec`; the executor's launcher
(`executors/launch.py`) writes the `AttemptSpec` and starts the lane's supervisor
(`executors/supervisor.py`), which runs the agent, commits what it left and writes
the `AttemptResult`; the executor reports it as a `finished` `LaneUpdate`; `_record`
hands that to the book (`lanebook.py`), which asks `outcome.py` what it means and
records it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from orchestree import agents, disk, doctor, executors, git, limits, scheduler, worktree_pool
from orchestree.errors import EnvironmentRefused, OrchestreeError, UserError
from orchestree.executors import launch
from orchestree.executors.attempt import LaneExecutor, LaneSpec, LaneUpdate, run_id
from orchestree.executors.local import handle_of as local_handle
from orchestree.initrepo import check_worktree_root
from orchestree.lanebook import LaneBook, Summary
from orchestree.layout import agent_name, branch
from orchestree.merge import radar
from orchestree.merge.startpoint import start_point
from orchestree.models import Lane, Tracker
from orchestree.repo import Repo
from orchestree.runlock import run_lock
from orchestree.worktree_share import STOCK_MAX, Stock, background, key_at, made_for

WAIT_S = 0.5
LAZY_S = 0.1  # the longest a lane's start or outcome waits to ride with another write
Reporter = Callable[[str], None]


@dataclass
class Running:
    """The orchestrator's side of an attempt it follows: which attempt, and what it
    read of the lane's log so far (live progress, a fatal sign). The executor holds
    the attempt itself (`launch.Launched` locally, a Dask future remotely)."""

    attempt: int
    preset: agents.AgentPreset | None = None
    log_offset: int = 0  # where this attempt's output starts in the lane's log
    read_to: int = 0  # how far the log has been read for live signs
    fatal: str | None = None  # why we ended an agent that waits for a person
    progress: str | None = None  # the live progress last written to the tracker


class Execution:
    def __init__(
        self,
        repo: Repo,
        only: set[str] | None,
        max_parallel: int | None,
        report: Reporter,
        kind: str = "lane",
        hard: bool = False,
    ) -> None:
        self.repo = repo
        self.hard = hard  # a reached budget or deadline also cancels the running lanes
        self.only = only
        self.kind = kind
        self.max_parallel = max_parallel or repo.config.defaults.max_parallel
        self.report = report
        self.running: dict[str, Running] = {}
        self.book = LaneBook(repo, report, self._in_scope)
        self.summary = self.book.summary
        self._stop = False
        self._executor: LaneExecutor | None = None
        self._base = ""
        self._run_id = ""
        self._git_identity: tuple[str, str] | None = None
        self._named: set[str] = set()  # edits of tracker.json already named (`_say_ignored`)
        self._waiting: set[str] = set()  # lanes the tracker shows waiting for memory
        self._limit: str | None = None  # the budget or deadline reached, once recorded
        self._pool: worktree_pool.Filler | None = None  # `[worktree] pool`, while it fills
        every = repo.config.radar.every_s if kind == "lane" else 0.0  # probes never clash
        self.radar = radar.Background(repo.layout, repo.store, every, report)

    # --- the loop -------------------------------------------------------------------

    def run(self) -> Summary:
        with run_lock(self.repo.layout, "execute"):
            # Refuse before anything changes: a refusal leaves the tracker as it was.
            if (
                self._preflight(self.repo.store.read())
                and self.repo.config.executor.kind == "local"
            ):
                self.executor()  # its fork server starts now, beside the run's first write
            try:
                tracker = self._begin()
                self._base = tracker.base_commit
                self._run_id = run_id(tracker.repo, tracker.created_at)
                self._recover(tracker)
                previous = signal.signal(signal.SIGINT, self._on_sigint)
                try:
                    with (
                        background(self._share_stock()),
                        background(self._pool_filler()) as self._pool,
                    ):
                        self._loop()
                finally:
                    signal.signal(signal.SIGINT, previous)
                    self.radar.close()
                    if self._stop:
                        self._cancel_all()
                self.radar.close(last=not self._stop)
                self._finish()
            finally:
                if self._executor is not None:
                    self._executor.close()
        return self.summary

    def executor(self) -> LaneExecutor:
        """The executor, opened when first needed (a Dask cluster takes a second)."""
        if self._executor is None:
            self._executor = executors.open_executor(self.repo, self._run_id, self._base)
        return self._executor

    def _pool_filler(self) -> worktree_pool.Filler | None:
        """`[worktree] pool`'s filler for this run's lanes (the local executor's only)."""
        config, layout = self.repo.config, self.repo.layout
        if config.worktree.pool <= 0 or config.executor.kind != "local" or self.kind != "lane":
            return None
        includes = launch.include_files(self.repo.root, layout.worktrees)
        return worktree_pool.Filler(
            self.repo.root, layout.worktrees, self._base, config.worktree,
            layout.orch / "share", includes, layout.orch / "logs" / "pool.log", self.report,
        )  # fmt: skip

    def _share_stock(self) -> Stock | None:
        """`[worktree] share`'s copies made ahead for this run's lanes (local executor)."""
        config, layout = self.repo.config, self.repo.layout
        setup, folders = config.worktree.setup, list(config.worktree.share)
        if not (setup and folders) or config.executor.kind != "local" or self.kind != "lane":
            return None
        made_key = key_at(self.repo.root, self._base, setup, folders, config.worktree.share_key)
        made = made_for(layout.orch / "share", made_key)
        return Stock(made, folders, min(self.max_parallel, STOCK_MAX))

    def _in_scope(self, lane_id: str, kind: str) -> bool:
        return kind == self.kind and (self.only is None or lane_id in self.only)

    def _begin(self) -> Tracker:
        root = self.repo.root

        def change(t: Tracker) -> None:
            base = git.head_commit(root, f"refs/heads/{t.base_branch}")
            if base is None:
                raise EnvironmentRefused(f"base branch {t.base_branch!r} no longer exists")
            t.base_commit = base
            t.phase = self._phase()  # the phase that runs now, whatever ran before
            t.status = "running"
            limits.begin(t)

        return self.repo.store.update(change, "execute-start")

    def _phase(self) -> int:
        """3 (execute) for lanes; 1 (probes) for probe lanes, 2 (plan) for the planner's."""
        from orchestree.planner_agent import PLANNER_LANE

        if self.kind != "probe":
            return 3
        return 2 if self.only == {PLANNER_LANE} else 1

    def _loop(self) -> None:
        self.book.deferring = True  # outcomes ride with the next claim (lanebook.py)
        try:
            self._steps()
        finally:
            self.book.deferring = False
            self.book.flush(lazy=True)

    def _steps(self) -> None:
        budget = self.repo.config.defaults.budget_usd is not None
        while not self._stop:
            if budget:
                self.book.flush()  # the budget counts every outcome's cost
            tracker = self.repo.store.read()
            self._say_ignored()
            lanes = {k: v for k, v in tracker.lanes.items()}
            scope = {k for k, v in lanes.items() if self._in_scope(k, v.kind)}
            memory = self._memory(lanes)
            decision = scheduler.decide(lanes, set(self.running), self.max_parallel, scope, memory)
            if self._limit_reached(tracker, scope):  # nothing new starts; blocks still hold
                decision = scheduler.Decision([], decision.block)
            self._mark_waiting(set(decision.waiting))
            blocks = {k: v for k, v in decision.block.items() if k in scope}
            if blocks:
                self.book.block(blocks)
            self._take_cancel_requests()
            for lane_id in decision.start:
                self._start(lane_id)
            waiting = any(lanes[k].status == "pending" for k in scope)
            if (waiting or not self.running) and self.book.flush():
                continue  # no lane took them along: decide again on the outcomes written
            if not self.running and not decision.start and not blocks:
                return
            self._wait()
            self.radar.tick()

    def _memory(self, lanes: dict[str, Lane]) -> scheduler.Memory | None:
        """Admission by memory's inputs, when `[defaults] min_free_mb` asks for it."""
        floor = self.repo.config.defaults.min_free_mb
        if not floor:
            return None
        per_agent: dict[str | None, int] = {}  # a few agents, many lanes
        estimates = {}
        for lane_id, lane in lanes.items():
            if lane.status in ("pending", "running"):
                if lane.agent not in per_agent:
                    per_agent[lane.agent] = self._preset(lane).memory_estimate_mb
                estimates[lane_id] = per_agent[lane.agent]
        return scheduler.Memory(mem_available_mb(), floor, estimates)

    def _limit_reached(self, tracker: Tracker, scope: set[str]) -> bool:
        """Whether the run's budget or deadline is reached (limits.py). The first time,
        record why on the tracker and on the lanes left pending, say it, and with
        `--hard` cancel the running lanes (their worktrees and commits are kept)."""
        if self._limit is not None:
            return True
        found = limits.reached(self.repo.config, tracker)
        if found is None:
            return False
        pending = [k for k in scope if tracker.lanes[k].status == "pending"]
        if not pending and not (self.hard and self.running):
            return False  # nothing it would hold back: the run simply ends
        reason, message = found
        self._limit = self.summary.stopped = message
        limits.record_stop(self.repo.store, reason, message, pending)
        self._waiting -= set(pending)
        what = "cancelling the running lanes" if self.hard and self.running else (
            "running lanes finish" if self.running else "nothing runs"
        )  # fmt: skip
        self.report(f"! {message}: no new lane starts; {what}")
        if self.hard:
            for lane_id, run in self.running.items():
                self.executor().cancel(lane_id, run.attempt)
        return True

    def _mark_waiting(self, waiting: set[str]) -> None:
        changed = {k: True for k in waiting - self._waiting}
        changed |= {k: False for k in self._waiting - waiting}
        self._waiting = waiting
        if changed:
            self.book.waiting(changed)

    def _say_ignored(self) -> None:
        """Name, once, what someone wrote into tracker.json that orchestree does not act on
        (docs/trust.md): only its own ledger decides which lanes run, and with which pid."""
        ignored = [i for i in self.repo.store.take_edits() if i not in self._named]
        self._named.update(ignored)
        if ignored:
            more = f" and {len(ignored) - 5} more" if len(ignored) > 5 else ""
            shown = ", ".join(ignored[:5]) + more
            self.report(f"! tracker.json was edited outside orchestree; ignored: {shown}")

    def _wait(self) -> None:
        if not self.running:
            return
        for update in self.executor().poll(LAZY_S if self.book.unwritten else WAIT_S):
            self._apply(update)
        if self.book.overdue(LAZY_S):  # no claim took them along in time: write them
            self.book.flush(lazy=True)
        for lane_id, run in list(self.running.items()):
            self._watch_output(lane_id, run)

    def _watch_output(self, lane_id: str, run: Running) -> None:
        """Read what the agent printed since last time: live progress, fatal signs.

        The lane's log is local for both executors: a remote lane's output arrives as
        updates and is appended to it (`_apply`)."""
        if run.preset is None:
            return
        log = self.repo.layout.log(lane_id)
        try:
            with log.open("rb") as fh:
                fh.seek(max(run.read_to, run.log_offset))
                chunk = fh.read(256 * 1024)
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        run.read_to = max(run.read_to, run.log_offset) + len(complete)
        progress = None
        for raw in complete.decode("utf-8", "replace").splitlines():
            progress = run.preset.progress_from_line(raw) or progress
            fatal = run.preset.fatal_from_line(raw)
            if fatal and run.fatal is None:
                run.fatal = fatal
                self.executor().cancel(lane_id, run.attempt)
        if progress is not None and progress != run.progress:
            run.progress = progress  # the tracker is written only when the text changes
            self.book.progress(lane_id, progress, None)

    def _apply(self, update: LaneUpdate) -> None:
        """Record one update from the executor; stale ones (an old attempt) are dropped."""
        run = self.running.get(update.lane_id)
        if run is None or run.attempt != update.attempt:
            return
        if update.kind == "started":
            self.book.started(update)
        elif update.kind == "output":
            with self.repo.layout.log(update.lane_id).open("a", encoding="utf-8") as fh:
                fh.write(update.output)
        elif update.kind == "progress":
            self.book.progress(update.lane_id, update.progress, update.data)
        else:
            self._record(update)

    def _record(self, update: LaneUpdate) -> None:
        run = self.running.pop(update.lane_id, None) or Running(update.attempt)
        head = self.executor().fetch(update.lane_id) or update.head
        self.book.finished(update, head, run.fatal, self._stop)
        self.radar.nudge()  # its work is committed now: look again

    # --- starting a lane -------------------------------------------------------------

    def _start(self, lane_id: str) -> None:
        repo = self.repo
        tracker = repo.store.read()
        lane = tracker.lanes[lane_id]
        deps = []
        for dep in lane.depends_on:
            head = git.head_commit(repo.root, f"refs/heads/{branch(dep)}")
            deps.append((dep, head or tracker.lanes[dep].head_commit or tracker.base_commit))
        if lane.start_commit and git.branch_exists(repo.root, branch(lane_id)):
            start = lane.start_commit  # a retry continues on the branch it has
        else:
            point = start_point(repo.root, tracker.base_commit, deps)
            if point.commit is None:
                files = ", ".join(point.conflicts)
                self.book.block({lane_id: f"its dependencies' branches conflict in: {files}"})
                return
            start = point.commit
        executor = self.executor()  # refuses (exit 3) before the lane is marked running
        port = self._free_port(tracker)
        attempt = lane.attempts + 1
        if attempt > 1 and self._pool is not None:
            self._pool.sweep()  # a claim its supervisor's death cut short holds the branch

        tracker = self.book.claim(lane_id, attempt, start, port)
        lane = tracker.lanes[lane_id]
        spec = LaneSpec(
            lane_id=lane_id,
            attempt=attempt,
            lane=lane,
            config=repo.config,
            base=tracker.base_commit,
            start=lane.start_commit or start,
            # A first attempt's branch does not exist yet: only a retry has a head to lease.
            expected=(
                git.head_commit(repo.root, f"refs/heads/{branch(lane_id)}")
                if lane.attempts > 1
                else None
            ),
            port=port,
            identity=self._identity(),
        )
        log_offset = self._log_size(lane_id)
        try:
            handle = executor.submit(spec)
        except Exception as exc:
            if isinstance(exc, EnvironmentRefused) or disk.is_disk_error(exc):
                raise  # the executor refuses to run anything, or the disk is full: stop, exit 3
            message = str(exc) if isinstance(exc, OrchestreeError) else repr(exc)
            self.book.settle(lane_id, attempt, "failed", {"error": message}, None)
            return
        self.running[lane_id] = Running(attempt, self._preset(lane), log_offset)
        # What the executor can say at once (locally: the supervisor started) goes into
        # the handle's tracker write: one transaction where there were two.
        early = executor.poll(0.0)
        started = next((u for u in early if u.kind == "started" and u.lane_id == lane_id
                        and u.attempt == attempt), None)  # fmt: skip
        self.book.submitted(lane_id, handle, started, lazy=executor.kind == "local")
        for update in early:
            if update is not started:
                self._apply(update)

    def _identity(self) -> tuple[str, str]:
        """The git identity lanes commit with, read once per run."""
        if self._git_identity is None:
            self._git_identity = git.identity(self.repo.root)
        return self._git_identity

    def _preset(self, lane: Lane) -> agents.AgentPreset:
        return agents.preset_for(self.repo.config, lane)

    def _log_size(self, lane_id: str) -> int:
        log = self.repo.layout.log(lane_id)
        return log.stat().st_size if log.exists() else 0

    def _free_port(self, tracker: Tracker) -> int:
        low, high = self.repo.config.worktree.ports
        used = {lane.port for lane in tracker.lanes.values() if lane.status == "running"}
        for port in range(low, high + 1):
            if port not in used:
                return port
        return low

    # --- resume, preflight, stop ---------------------------------------------------------

    def _recover(self, tracker: Tracker) -> None:
        """Follow the attempts an earlier orchestrator left running."""
        handles: dict[str, str] = {}
        kind = self.repo.config.executor.kind
        for lane_id, lane in tracker.lanes.items():
            if lane.status != "running":
                continue
            agent = tracker.agents.get(agent_name(lane_id))
            handle = agent.handle if agent else None
            if not handle and kind == "local":  # launched, perhaps, but not recorded
                handle = local_handle(lane_id, lane.attempts, None)
            self.running[lane_id] = Running(lane.attempts, self._preset(lane))
            self.running[lane_id].log_offset = self._log_size(lane_id)  # new output only
            if handle and handle.startswith(f"{kind}:"):
                handles[lane_id] = handle
            else:  # never submitted, or by another kind of executor: nothing to follow
                self._record(LaneUpdate(lane_id, lane.attempts, "finished", reason="gone"))
        if not handles:
            return
        updates = self.executor().reattach(list(handles.values()))
        for update in updates:
            self._apply(update)
        tracker = self.repo.store.read()  # with the pids the updates recorded
        for lane_id, handle in handles.items():
            if lane_id in self.running:
                agent = tracker.agents[agent_name(lane_id)]
                where = f"pid {agent.pid}" if kind == "local" else handle
                self.report(f"→ {lane_id}: adopted from an earlier run ({where})")

    def _preflight(self, tracker: Tracker) -> bool:
        """Refuse before anything starts: missing agents, paths or branches not ours.
        Then warn once about what the agents will miss (Codex without bubblewrap).
        Whether any lane in scope is left to run or to follow."""
        todo = {
            k: lane
            for k, lane in tracker.lanes.items()
            if lane.status in ("pending", "running") and self._in_scope(k, lane.kind)
        }
        config = self.repo.config
        users = {k: config.for_lane(lane).agent for k, lane in todo.items()}
        names = set(users.values())
        local = config.executor.kind == "local"  # remote agents are the workers' own
        kinds = frozenset(lane.sandbox for lane in todo.values() if lane.sandbox)
        if local:  # every missing program in one refusal, not one per run
            doctor.require(config, self.repo.root, "execute", users, kinds)
        for row in [] if local else doctor.sandbox_checks(config, kinds):
            if not row.ok:  # the remote executor has no sandbox: never run without it
                raise EnvironmentRefused(f"{row.what}: {row.detail}; nothing was started")
        check_worktree_root(self.repo.root, config.worktree.root)
        heads = git.ref_heads(self.repo.root, "refs/heads/lane-*")  # one call for all lanes
        for lane_id, lane in todo.items():
            problem = launch.ownership_problem(self.repo, lane_id, lane, heads)
            if problem:
                raise UserError(f"lane {lane_id!r}: {problem}")
        for warning in agents.agent_warnings(names, self.repo.config) if local else []:
            self.report(f"! warning: {warning}")
        if not local and config.worktree.pool:
            self.report(f"! warning: {worktree_pool.NOT_REMOTE}")
        return bool(todo)

    def _on_sigint(self, _signum: int, _frame: object) -> None:
        self._stop = True

    def _take_cancel_requests(self) -> None:
        """`orchestree cancel` on a lane this run follows remotely leaves a request file."""
        folder = self.repo.layout.cancel_requests
        if not folder.is_dir():
            return
        for request in folder.iterdir():
            run = self.running.get(request.name)
            if run is not None:
                self.report(f"… {request.name}: cancelling (requested)")
                self.executor().cancel(request.name, run.attempt)
            request.unlink(missing_ok=True)

    def _cancel_all(self) -> None:
        executor = self.executor() if self.running else None
        for lane_id, run in self.running.items():
            if executor is not None:
                executor.cancel(lane_id, run.attempt)
        deadline = time.monotonic() + self.repo.config.defaults.kill_grace_s + 5
        while executor is not None and self.running and time.monotonic() < deadline:
            for update in executor.poll(0.2):
                self._apply(update)
        self.summary.interrupted = True

    def _finish(self) -> None:
        tracker = self.repo.store.read()
        self._say_ignored()
        for lane_id, lane in tracker.lanes.items():
            if self._in_scope(lane_id, lane.kind):
                self.summary.statuses[lane_id] = lane.status

        def change(t: Tracker) -> None:
            for lane_id in self._waiting:  # nothing waits once the run is over
                if lane_id in t.lanes:
                    t.lanes[lane_id].waiting_for = None
            limits.checkpoint(t)
            if self._stop:
                t.status = "cancelled"
            elif self.summary.exit_code == 0:
                t.status = "completed"
            else:
                t.status = "failed"

        self.repo.store.update(change, "execute-end")


def mem_available_mb() -> int:
    """MemAvailable from /proc/meminfo, in MB (what the kernel says can be allocated
    without swapping); 0 where there is no such file, which admits one lane at a time."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def execute(
    repo: Repo,
    only: set[str] | None = None,
    max_parallel: int | None = None,
    report: Reporter = print,
    kind: str = "lane",
    hard: bool = False,
) -> Summary:
    return Execution(repo, only, max_parallel, report, kind, hard).run()
