"""Phase 3, execute: run pending lanes in DAG order, in parallel, resumably.

One orchestrator at a time holds `.orchestration/run.lock` (runlock.py). The loop asks the
scheduler which lanes may start, starts their supervisors, and records each outcome.
After a crash, `execute` again resumes: a lane whose supervisor still runs is adopted,
one that finished meanwhile is collected, one whose process is gone is failed as
interrupted and retried if attempts remain. Ctrl-C ends the agents, marks their lanes
`cancelled` and keeps their worktrees.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestree import agents, git, runner, scheduler, supervisor
from orchestree.access_tracker import now_iso
from orchestree.errors import EnvironmentRefused, OrchestreeError, UserError
from orchestree.layout import agent_name, branch
from orchestree.models import Agent, Tracker
from orchestree.orchestrator import Repo
from orchestree.report import HELD
from orchestree.runlock import run_lock
from orchestree.tracker import is_our_process

POLL_S = 0.02
Reporter = Callable[[str], None]


@dataclass
class Running:
    attempt: int
    launched: runner.Launched
    preset: agents.AgentPreset | None = None
    read_to: int = 0  # how far the log has been read for live signs
    fatal: str | None = None  # why we ended an agent that waits for a person


@dataclass
class Summary:
    statuses: dict[str, str] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # agent -> one message
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        bad = {"failed", "blocked", "cancelled", "conflict", "verify_failed"}
        return 1 if any(s in bad for s in self.statuses.values()) else 0


class Execution:
    def __init__(
        self,
        repo: Repo,
        only: set[str] | None,
        max_parallel: int | None,
        report: Reporter,
        kind: str = "lane",
    ) -> None:
        self.repo = repo
        self.only = only
        self.kind = kind
        self.max_parallel = max_parallel or repo.config.defaults.max_parallel
        self.report = report
        self.running: dict[str, Running] = {}
        self._includes: list[str] | None = None  # .worktreeinclude matches, found once
        self.summary = Summary()
        self._stop = False

    # --- the loop -------------------------------------------------------------------

    def run(self) -> Summary:
        with run_lock(self.repo.layout, "execute"):
            # Refuse before anything changes: a refusal leaves the tracker as it was.
            self._preflight(self.repo.store.read())
            tracker = self._begin()
            self._recover(tracker)
            previous = signal.signal(signal.SIGINT, self._on_sigint)
            try:
                self._loop()
            finally:
                signal.signal(signal.SIGINT, previous)
                if self._stop:
                    self._cancel_all()
            self._finish()
        return self.summary

    def _in_scope(self, lane_id: str, kind: str) -> bool:
        return kind == self.kind and (self.only is None or lane_id in self.only)

    def _begin(self) -> Tracker:
        root = self.repo.root

        def change(t: Tracker) -> None:
            base = git.head_commit(root, f"refs/heads/{t.base_branch}")
            if base is None:
                raise EnvironmentRefused(f"base branch {t.base_branch!r} no longer exists")
            t.base_commit = base
            t.phase = max(t.phase, 1 if self.kind == "probe" else 3)
            t.status = "running"

        return self.repo.store.update(change, "execute-start")

    def _loop(self) -> None:
        while not self._stop:
            tracker = self.repo.store.read()
            lanes = {k: v for k, v in tracker.lanes.items()}
            scope = {k for k, v in lanes.items() if self._in_scope(k, v.kind)}
            decision = scheduler.decide(lanes, set(self.running), self.max_parallel, scope)
            blocks = {k: v for k, v in decision.block.items() if k in scope}
            if blocks:
                self._block(blocks)
            for lane_id in decision.start:
                self._start(lane_id)
            if not self.running and not decision.start and not blocks:
                return
            self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 0.5
        while not self._stop and time.monotonic() < deadline:
            for lane_id, run in list(self.running.items()):
                if self._finished(run):
                    self._record(lane_id, run)
                    return
            time.sleep(POLL_S)
        for lane_id, run in list(self.running.items()):
            self._watch_output(lane_id, run)

    def _watch_output(self, lane_id: str, run: Running) -> None:
        """Read what the agent printed since last time: live progress, fatal signs."""
        if run.preset is None:
            return
        log = self.repo.layout.log(lane_id)
        try:
            with log.open("rb") as fh:
                fh.seek(max(run.read_to, run.launched.log_offset))
                chunk = fh.read(256 * 1024)
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        run.read_to = max(run.read_to, run.launched.log_offset) + len(complete)
        progress = None
        for raw in complete.decode("utf-8", "replace").splitlines():
            progress = run.preset.progress_from_line(raw) or progress
            fatal = run.preset.fatal_from_line(raw)
            if fatal and run.fatal is None:
                run.fatal = fatal
                with contextlib.suppress(ProcessLookupError):
                    os.kill(run.launched.pid, signal.SIGTERM)
        if progress is not None:

            def change(t: Tracker) -> None:
                t.lanes[lane_id].progress = progress

            self.repo.store.update(change, "progress", lane=lane_id)

    @staticmethod
    def _finished(run: Running) -> bool:
        proc = run.launched.process
        if proc is not None:
            return proc.poll() is not None
        if run.launched.result.exists():
            return True
        return not is_our_process(run.launched.pid, run.launched.pid_started)

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
            point = runner.start_point(repo.root, tracker.base_commit, deps)
            if point.commit is None:
                files = ", ".join(point.conflicts)
                self._block({lane_id: f"its dependencies' branches conflict in: {files}"})
                return
            start = point.commit
        port = self._free_port(tracker)
        attempt = lane.attempts + 1

        def claim(t: Tracker) -> None:
            entry = t.lanes[lane_id]
            entry.status = "running"
            entry.attempts = attempt
            entry.start_commit = entry.start_commit or start
            entry.port = port
            entry.error = None
            entry.started_at = now_iso()
            entry.finished_at = None
            t.agents[agent_name(lane_id)] = Agent(
                worktree=repo.layout.rel(repo.layout.worktree(lane_id)),
                lane=lane_id,
                branch=branch(lane_id),
                agent=entry.agent or repo.config.defaults.agent,
                status="created",
                log=repo.layout.rel(repo.layout.log(lane_id)),
                started_at=entry.started_at,
            )

        tracker = repo.store.update(claim, "lane-start", lane=lane_id, attempt=attempt)
        lane = tracker.lanes[lane_id]
        try:
            new = runner.prepare(repo, lane_id, lane, start)
            if new and self._includes is None:
                self._includes = runner.include_files(repo.root, repo.layout.worktrees)
            includes = self._includes or []
            launched = runner.launch(repo, lane_id, lane, attempt, port, new, includes)
        except Exception as exc:
            message = str(exc) if isinstance(exc, OrchestreeError) else repr(exc)
            self._settle(lane_id, attempt, "failed", {"error": message}, None)
            return
        preset = agents.get_agent(lane.agent or repo.config.defaults.agent, repo.config)
        self.running[lane_id] = Running(attempt, launched, preset)

        def started(t: Tracker) -> None:
            agent = t.agents[agent_name(lane_id)]
            agent.status, agent.pid, agent.pid_started = (
                "running",
                launched.pid,
                launched.pid_started,
            )

        repo.store.update(started, "agent-start", lane=lane_id, pid=launched.pid)
        self.report(f"→ {lane_id}: started (attempt {attempt}, pid {launched.pid})")

    def _free_port(self, tracker: Tracker) -> int:
        low, high = self.repo.config.worktree.ports
        used = {lane.port for lane in tracker.lanes.values() if lane.status == "running"}
        for port in range(low, high + 1):
            if port not in used:
                return port
        return low

    # --- recording outcomes ------------------------------------------------------------

    def _record(self, lane_id: str, run: Running) -> None:
        self.running.pop(lane_id, None)
        result = runner.read_result(run.launched.result)
        if result is None:
            # The supervisor died (SIGKILL, OOM) without ending its agent: end it now,
            # so a retry never shares the worktree with the previous attempt's agent.
            grace = self.repo.config.defaults.kill_grace_s
            supervisor.end_orphaned_agent(str(run.launched.agent_file), grace)
            result = {
                "reason": "interrupted" if self._stop else "error",
                "error": "the lane's supervisor ended without an outcome",
            }
        lane = self.repo.store.read().lanes[lane_id]
        got = runner.collect(
            self.repo, lane_id, lane, result, run.launched.log_offset, fatal=run.fatal
        )
        fields: dict[str, Any] = {
            "error": got.error,
            "head_commit": got.head,
            "changed_files": got.changed,
            "results": got.results,
            "no_changes": got.ok and not got.changed,
            "session_id": got.session_id,
            "num_turns": got.num_turns,
            "cost_usd": got.cost_usd,
        }
        if got.ok:
            status = "completed"
        elif run.fatal is None and (got.reason in ("cancelled", "interrupted") or self._stop):
            status = "cancelled"
        elif got.auth_failure:
            status = "failed"
            self._hold_agent(lane_id, lane.agent or self.repo.config.defaults.agent, got.error)
        elif run.attempt < (lane.max_attempts or self.repo.config.defaults.max_attempts):
            status = "pending"
        else:
            status = "failed"
        self._settle(lane_id, run.attempt, status, fields, got.exit_code)

    def _settle(
        self,
        lane_id: str,
        attempt: int,
        status: str,
        fields: dict[str, Any],
        exit_code: int | None,
    ) -> None:
        def change(t: Tracker) -> None:
            lane = t.lanes[lane_id]
            for key, value in fields.items():
                setattr(lane, key, value)
            lane.status = status  # type: ignore[assignment]
            lane.finished_at = now_iso()
            agent = t.agents.get(agent_name(lane_id))
            if agent is not None:
                agent.status = "completed" if status == "completed" else "failed"
                agent.exit_code = exit_code
                agent.finished_at = lane.finished_at

        self.repo.store.update(change, "lane-end", lane=lane_id, status=status, attempt=attempt)
        self.summary.statuses[lane_id] = status
        mark = {"completed": "✓", "pending": "↻"}.get(status, "✗")
        note = fields.get("error")
        if status == "completed" and fields.get("no_changes"):
            note = "completed but changed nothing"
        retry = " (will retry)" if status == "pending" else ""
        self.report(f"{mark} {lane_id}: {status}{retry}" + (f": {note}" if note else ""))

    def _block(self, blocks: dict[str, str], quiet: bool = False) -> None:
        def change(t: Tracker) -> None:
            for lane_id, why in blocks.items():
                lane = t.lanes[lane_id]
                lane.status = "blocked"
                lane.error = why

        self.repo.store.update(change, "lanes-blocked", lanes=sorted(blocks))
        for lane_id, why in blocks.items():
            self.summary.statuses[lane_id] = "blocked"
            if not quiet:
                self.report(f"✗ {lane_id}: blocked: {why}")

    def _hold_agent(self, lane_id: str, agent: str, error: str | None) -> None:
        """An authentication failure holds every other pending lane of that agent: one
        line now naming them, the login hint once at the end (`Summary.held`)."""
        hint = agents.get_agent(agent, self.repo.config).login_hint
        why = f"{HELD}agent {agent!r} is not logged in ({error}); {hint}"
        self.summary.held[agent] = why
        tracker = self.repo.store.read()
        held = {
            k: why
            for k, lane in tracker.lanes.items()
            if k != lane_id
            and lane.status == "pending"
            and (lane.agent or self.repo.config.defaults.agent) == agent
            and self._in_scope(k, lane.kind)
        }
        if held:
            self._block(held, quiet=True)
            names = ", ".join(sorted(held, key=lambda k: tracker.lanes[k].order))
            self.report(f"✗ {names}: blocked: agent {agent!r} is not logged in (see below)")

    # --- resume, preflight, stop ---------------------------------------------------------

    def _recover(self, tracker: Tracker) -> None:
        for lane_id, lane in tracker.lanes.items():
            if lane.status != "running":
                continue
            agent = tracker.agents.get(agent_name(lane_id))
            result = self.repo.layout.orch / "runs" / f"{lane_id}.{lane.attempts}.result.json"
            pid = agent.pid if agent else None
            started = agent.pid_started if agent else None
            alive = is_our_process(pid, started)
            if alive or result.exists():
                launched = runner.Launched(pid or 0, started or 0.0, result, 0, None)
                self.running[lane_id] = Running(lane.attempts, launched)
                self.report(f"→ {lane_id}: adopted from an earlier run (pid {pid})")
                continue
            grace = self.repo.config.defaults.kill_grace_s
            supervisor.end_orphaned_agent(str(result).replace(".result.", ".agent."), grace)
            retry = lane.attempts < (lane.max_attempts or self.repo.config.defaults.max_attempts)
            self._settle(
                lane_id,
                lane.attempts,
                "pending" if retry else "failed",
                {"error": "interrupted: its process is gone (the orchestrator was stopped)"},
                None,
            )

    def _preflight(self, tracker: Tracker) -> None:
        """Refuse before anything starts: missing agents, paths or branches not ours.
        Then warn once about what the agents will miss (Codex without bubblewrap)."""
        todo = {
            k: lane
            for k, lane in tracker.lanes.items()
            if lane.status in ("pending", "running") and self._in_scope(k, lane.kind)
        }
        names = {lane.agent or self.repo.config.defaults.agent for lane in todo.values()}
        for name in sorted(names):
            agents.check_available(name, self.repo.config)
        for lane_id, lane in todo.items():
            problem = runner.ownership_problem(self.repo, lane_id, lane)
            if problem:
                raise UserError(f"lane {lane_id!r}: {problem}")
        for warning in agents.agent_warnings(names, self.repo.config):
            self.report(f"! warning: {warning}")

    def _on_sigint(self, _signum: int, _frame: object) -> None:
        self._stop = True

    def _cancel_all(self) -> None:
        for run in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.launched.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.repo.config.defaults.kill_grace_s + 5
        while self.running and time.monotonic() < deadline:
            for lane_id, run in list(self.running.items()):
                if self._finished(run):
                    self._record(lane_id, run)
            time.sleep(POLL_S)
        self.summary.interrupted = True

    def _finish(self) -> None:
        tracker = self.repo.store.read()
        for lane_id, lane in tracker.lanes.items():
            if self._in_scope(lane_id, lane.kind):
                self.summary.statuses[lane_id] = lane.status

        def change(t: Tracker) -> None:
            if self._stop:
                t.status = "cancelled"
            elif self.summary.exit_code == 0:
                t.status = "completed"
            else:
                t.status = "failed"

        self.repo.store.update(change, "execute-end")


def execute(
    repo: Repo,
    only: set[str] | None = None,
    max_parallel: int | None = None,
    report: Reporter = print,
    kind: str = "lane",
) -> Summary:
    return Execution(repo, only, max_parallel, report, kind).run()
