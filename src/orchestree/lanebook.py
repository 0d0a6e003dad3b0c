"""What happens to lanes during `execute`, written into the tracker and said aloud.

The execution loop decides and drives; this book is where it records: a lane claimed,
its agent started, its outcome judged (completed, retried, failed, cancelled), lanes
blocked or held behind an agent that is not logged in. Every line the user sees about
a lane comes from here too, so the tracker and the output always agree. A finished
attempt arrives as a `LaneUpdate` built from its `AttemptResult` (executors/attempt.py);
`outcome.judge` says what it means.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestree import agents, costs, git, outcome, sandbox
from orchestree.access_tracker import PROGRESS_MAX_CHARS, agent_field_problem, now_iso
from orchestree.errors import GitError
from orchestree.executors.attempt import LaneUpdate, changed_files
from orchestree.layout import PLAN_FILE, agent_name, branch, results_dir
from orchestree.models import UNSUCCESSFUL, Agent, Lane, Tracker
from orchestree.planner_agent import is_planner_lane
from orchestree.repo import Repo
from orchestree.tracker import Change
from orchestree.worktree_guard import UNTRUSTED

Reporter = Callable[[str], None]


@dataclass
class Summary:
    statuses: dict[str, str] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # agent -> one message
    interrupted: bool = False
    stopped: str | None = None  # the run's budget or deadline reached (limits.py)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.stopped:
            return 1
        return 1 if any(s in UNSUCCESSFUL for s in self.statuses.values()) else 0


class LaneBook:
    def __init__(self, repo: Repo, report: Reporter, in_scope: Callable[[str, str], bool]):
        self.repo = repo
        self.report = report
        self.in_scope = in_scope
        self.summary = Summary()
        # While set (execute's loop), an outcome is written with the book's next tracker
        # write (the next lane's claim, most often) rather than in a write of its own.
        # Safe to lose: the attempt's result file stays, and a resumed run reads it.
        self.deferring = False
        self._deferred: list[Change] = []
        # While deferring, a local lane's start (its supervisor's pid) rides with the
        # next write too, and waits at most LAZY_S for one (execution.py's wait). Safe
        # to lose: the supervisor's identity is in its attempt's files (launch.start),
        # where a resumed run finds it; a lane's claim is never deferred.
        self._lazy: list[Change] = []
        self._unwritten_since: float | None = None  # monotonic: the oldest kept back

    def _write(self, *changes: Change) -> Tracker:
        """One tracker transaction: the lazy starts, the deferred outcomes, `changes`."""
        batch, self._lazy, self._deferred = [*self._lazy, *self._deferred, *changes], [], []
        self._unwritten_since = None
        return self.repo.store.update_many(batch)

    def _keep(self, kept: list[Change], *changes: Change) -> None:
        """Keep `changes` back for the next write (`kept`: the lazy or deferred list)."""
        if self._unwritten_since is None:
            self._unwritten_since = time.monotonic()
        kept.extend(changes)

    def flush(self, lazy: bool = False) -> bool:
        """Write the deferred outcomes now (with `lazy`, the lazy starts too); whether
        there was anything to write."""
        if not self._deferred and not (lazy and self._lazy):
            return False
        self._write()
        return True

    @property
    def unwritten(self) -> bool:
        """Whether deferred outcomes or lazy starts wait for a write."""
        return bool(self._deferred or self._lazy)

    def overdue(self, wait_s: float) -> bool:
        """Whether what is kept back has waited `wait_s` or more for a write."""
        since = self._unwritten_since
        return since is not None and time.monotonic() - since >= wait_s

    def claim(self, lane_id: str, attempt: int, start: str, port: int) -> Tracker:
        """Mark the lane running (before anything is submitted: a crash after this is
        seen by the next run as an attempt to reattach to or to fail)."""
        layout, config = self.repo.layout, self.repo.config

        def change(t: Tracker) -> None:
            entry = t.lanes[lane_id]
            entry.status = "running"
            entry.waiting_for = None
            entry.attempts = attempt
            entry.start_commit = entry.start_commit or start
            entry.port = port
            entry.error = None
            entry.started_at = now_iso()
            entry.finished_at = None
            t.agents[agent_name(lane_id)] = Agent(
                worktree=layout.rel(layout.worktree(lane_id)),
                lane=lane_id,
                branch=branch(lane_id),
                agent=config.for_lane(entry).agent,
                status="created",
                log=layout.rel(layout.log(lane_id)),
                started_at=entry.started_at,
            )

        return self._write((change, "lane-start", {"lane": lane_id, "attempt": attempt}))

    def submitted(
        self, lane_id: str, handle: str, started: LaneUpdate | None = None, lazy: bool = False
    ) -> None:
        """Record the attempt's handle; with `started` (the executor said so already, as
        the local one does at once), its start too, in the same tracker write. `lazy`:
        the handle can be found without the tracker (the local executor's), so while
        deferring the record rides with the next write."""

        def change(t: Tracker) -> None:
            t.agents[agent_name(lane_id)].handle = handle

        changes: list[Change] = [(change, "agent-submit", {"lane": lane_id, "handle": handle})]
        if started is not None:
            changes.append(self._started(started))
        if lazy and self.deferring:
            self._keep(self._lazy, *changes)
        else:
            self._write(*changes)
        if started is not None:
            self._say_started(started)

    def started(self, update: LaneUpdate) -> None:
        self._write(self._started(update))
        self._say_started(update)

    @staticmethod
    def _started(update: LaneUpdate) -> Change:
        lane_id = update.lane_id

        def change(t: Tracker) -> None:
            agent = t.agents[agent_name(lane_id)]
            agent.status, agent.pid = "running", update.pid
            ident = update.pid_identity  # what identifies that pid; never a wall-clock time
            agent.pid_ticks, agent.boot_id = (ident.ticks, ident.boot_id) if ident else (None, None)
            agent.pid_started = None
            agent.host = update.host
            lane = t.lanes[lane_id]
            lane.host, lane.worker = update.host, update.worker

        detail = {"lane": lane_id, "pid": update.pid, "host": update.host, "worker": update.worker}
        return change, "agent-start", detail

    def _say_started(self, update: LaneUpdate) -> None:
        where = f"on {update.host} ({update.worker})" if update.host else f"pid {update.pid}"
        self.report(f"→ {update.lane_id}: started (attempt {update.attempt}, {where})")

    def progress(self, lane_id: str, text: str | None, data: dict[str, Any] | None) -> None:
        # Within the caps an agent's own fields have (a remote agent's arrive here).
        text = text[:PROGRESS_MAX_CHARS] if isinstance(text, str) else None
        if data is not None and agent_field_problem("data", data):
            data = None

        def change(t: Tracker) -> None:
            lane = t.lanes[lane_id]
            lane.progress = text
            if data is not None:
                lane.data = data

        self._write((change, "progress", {"lane": lane_id}))

    def finished(
        self, update: LaneUpdate, head: str | None, fatal: str | None, stopping: bool
    ) -> None:
        """Judge a finished attempt and record it: completed, pending again (a retry),
        failed (holding the agent's other lanes on a login failure) or cancelled."""
        lane_id, attempt = update.lane_id, update.attempt
        lane = self.repo.store.read().lanes[lane_id]
        root, start = self.repo.root, lane.start_commit
        changed = changed_files(root, start, head, update.head, update.changed)
        prefix = results_dir(lane_id) + "/"
        results = sorted({p for p in changed if p.startswith(prefix)} | set(lane.results))
        settings = self.repo.config.for_lane(lane)
        got = outcome.judge(
            self.repo.config, lane, update, fatal, lambda: self._probe_problem(lane_id, lane, head)
        )
        fields: dict[str, Any] = {
            "error": got.error,
            "head_commit": head,
            "changed_files": changed,
            "results": results,
            "no_changes": got.ok and not changed,
            "session_id": got.session_id,
            "num_turns": got.num_turns,
        }
        fields.update(self._cost(lane, got))
        if update.refs_restored:  # the sandboxed agent moved them; they are back
            fields["refs_restored"] = update.refs_restored
            self.report(f"! {lane_id}: its agent moved {', '.join(update.refs_restored)}; restored")
        late = self._restore_left_refs(lane_id, attempt)
        if late:  # its supervisor was killed before it could put them back
            fields["refs_restored"] = sorted({*update.refs_restored, *late})
            self.report(f"! {lane_id}: its agent moved {', '.join(late)}; restored by orchestree "
                        "(its supervisor died before it could)")  # fmt: skip
        if update.host:  # its started event may not have arrived (a quick remote lane)
            fields.update(host=update.host, worker=update.worker)
        if got.ok:
            status = "completed"
        elif fatal is None and (update.reason in ("cancelled", "interrupted") or stopping):
            status = "cancelled"
        elif got.auth_failure:
            status = "failed"
            self.hold_agent(lane_id, settings.agent, got.error)
        elif update.reason == UNTRUSTED:
            status = "failed"  # a retry would act in a worktree that is no longer ours
        elif attempt < settings.max_attempts:
            status = "pending"
        else:
            status = "failed"
        self.settle(lane_id, attempt, status, fields, update.exit_code, update.timings)

    def _cost(self, lane: Lane, got: outcome.Verdict) -> dict[str, Any]:
        """The lane's cost over its attempts (what the run's budget sums), with this
        attempt's: reported by the CLI, or estimated from its tokens (costs.py)."""
        cost = costs.attempt_cost(
            self.repo.config, lane.agent or self.repo.config.defaults.agent, got
        )
        return {
            "cost_usd": costs.add(lane.cost_usd, cost.usd),
            "cost_estimated": lane.cost_estimated or cost.estimated,
        }

    def _restore_left_refs(self, lane_id: str, attempt: int) -> list[str]:
        """The refs a sandboxed agent moved and its supervisor, killed, did not restore:
        it saved them before the agent started (sandbox.saved_refs_file)."""
        saved = sandbox.saved_refs_file(self.repo.layout.orch / "runs", lane_id, attempt)
        try:
            return sandbox.restore_saved(self.repo.root, saved)
        except (GitError, OSError) as exc:
            self.report(f"! {lane_id}: could not restore the refs its agent may have moved: {exc}")
            return []

    def settle(
        self,
        lane_id: str,
        attempt: int,
        status: str,
        fields: dict[str, Any],
        exit_code: int | None,
        timings: dict[str, float] | None = None,
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

        steps = {"timings": timings} if timings else {}  # a remote lane's seconds per step
        detail = {"lane": lane_id, "status": status, "attempt": attempt, **steps}
        if self.deferring:
            self._keep(self._deferred, (change, "lane-end", detail))
        else:
            self._write((change, "lane-end", detail))
        self.summary.statuses[lane_id] = status
        mark = {"completed": "✓", "pending": "↻"}.get(status, "✗")
        note = fields.get("error")
        if status == "completed" and fields.get("no_changes"):
            note = "completed but changed nothing"
        retry = " (will retry)" if status == "pending" else ""
        self.report(f"{mark} {lane_id}: {status}{retry}" + (f": {note}" if note else ""))

    def waiting(self, lanes: dict[str, bool]) -> None:
        """Mark (True) or clear (False) pending lanes as waiting for memory: a field the
        status and the monitors show, written only when it changes."""

        def change(t: Tracker) -> None:
            for lane_id, waits in lanes.items():
                lane = t.lanes.get(lane_id)
                if lane is not None:
                    lane.waiting_for = "memory" if waits and lane.status == "pending" else None

        self._write((change, "lanes-waiting", {"lanes": sorted(lanes)}))
        for lane_id in sorted(k for k, waits in lanes.items() if waits):
            self.report(f"… {lane_id}: waiting for memory ([defaults] min_free_mb)")

    def block(self, blocks: dict[str, str], quiet: bool = False, held: str | None = None) -> None:
        """Block lanes (lane id -> why); `held` names the agent whose login holds them."""

        def change(t: Tracker) -> None:
            for lane_id, why in blocks.items():
                lane = t.lanes[lane_id]
                lane.status = "blocked"
                lane.error = why
                lane.held = held

        self._write((change, "lanes-blocked", {"lanes": sorted(blocks)}))
        for lane_id, why in blocks.items():
            self.summary.statuses[lane_id] = "blocked"
            if not quiet:
                self.report(f"✗ {lane_id}: blocked: {why}")

    def hold_agent(self, lane_id: str, agent: str, error: str | None) -> None:
        """An authentication failure holds every other pending lane of that agent: one
        line now naming them, the login hint once at the end (`Summary.held`)."""
        hint = agents.get_agent(agent, self.repo.config).login_hint
        why = f"agent {agent!r} is not logged in ({error}); {hint}"
        self.summary.held[agent] = why
        self.flush()  # a deferred retry is a pending lane to hold too
        tracker = self.repo.store.read()
        held = {
            k: why
            for k, lane in tracker.lanes.items()
            if k != lane_id
            and lane.status == "pending"
            and self.repo.config.for_lane(lane).agent == agent
            and self.in_scope(k, lane.kind)
        }
        if held:
            self.block(held, quiet=True, held=agent)
            names = ", ".join(sorted(held, key=lambda k: tracker.lanes[k].order))
            self.report(f"✗ {names}: blocked: agent {agent!r} is not logged in (see below)")

    def _probe_problem(self, lane_id: str, lane: Lane, head: str | None) -> str | None:
        """Why a probe lane's `state_probe.json` is unusable (for a planner agent's lane,
        its plan): read from its worktree, or from its branch when it ran elsewhere."""
        planner = is_planner_lane(lane)  # a planner agent: its result is the plan
        rel = PLAN_FILE if planner else f"{results_dir(lane_id)}/state_probe.json"
        check = outcome.plan_output_problem if planner else outcome.probe_output_problem
        worktree = self.repo.layout.worktree(lane_id)
        if worktree.exists() or not head:
            return check(worktree / rel)
        path = self.repo.layout.orch / "runs" / f"{lane_id}.{rel.rpartition('/')[2]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        shown = git.run("show", f"{head}:{rel}", cwd=self.repo.root, check=False)
        if shown.returncode == 0:
            path.write_text(shown.stdout, encoding="utf-8")
        return check(path)
