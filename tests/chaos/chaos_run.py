"""One chaos run: a real repository, real orchestree commands, real agents, faults.

`ChaosRun(plan, tmp).run()` builds a repository with the plan's lanes, runs
`orchestree execute` while the plan's faults strike (or `merge`, for a verify kill),
removes the faults, resumes with `execute` and `merge` (at most `ROUNDS` times) until
every lane has settled, and returns what it observed for `chaos_invariants` to judge:
every command's exit and output, the base branch after each command, the tracker as
sampled every few milliseconds, the agents' own records, what each fault hit, and the
processes still running at the end.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_hostile import (
    HostileSet,
    exists,
    forged_branches,
    ignored_edits,
    kept,
    merge_lanes,
    on_main,
)
from chaos_namespace import (
    Namespace,
    alive,
    cmdline,
    copy_proc_stat,
    end_marked,
    kill,
    parent_of,
    step_btime,
)
from chaos_scenarios import (
    AT_MERGE,
    CLOCK_STEPS,
    KILL_CLEANUP,
    KILL_POOL,
    KILL_THEN_CLOCK,
    FaultPlan,
    Plan,
)

HERE = Path(__file__).parent
ORCHESTREE = str(Path(sys.executable).with_name("orchestree"))
ROUNDS = 3  # resume rounds (execute, then merge) after the faulted one
COMMAND_TIMEOUT_S = 120.0  # a command still running after this is a hang: a violation
SAMPLE_S = 0.03
TMPFS_SIZE = "8m"
# `kill-pool` runs: two spares, and a setup that takes a moment (so the filler is busy
# when the kill strikes) and makes a folder the lanes' worktrees then have, shared:
# share's stock makes copies of it ahead while lanes and spares take them.
POOL_CONFIG = (
    '\n[worktree]\npool = 2\nshare = ["deps"]\n'
    'setup = "mkdir -p deps && echo dep > deps/dep.txt && sleep 0.3"\n'
)
# `kill-cleanup` runs: the same, with a shared folder of TEMPLATE_FILES files, so that
# removing a stale template (and its copies made ahead) lasts long enough to strike.
TEMPLATE_FILES = 3000
CLEANUP_CONFIG = POOL_CONFIG.replace(
    "echo dep > deps/dep.txt",
    f"echo dep > deps/dep.txt && cd deps && seq {TEMPLATE_FILES} | xargs touch",
)
IDENTITY = {
    "GIT_AUTHOR_NAME": "chaos",
    "GIT_AUTHOR_EMAIL": "chaos@orchestree.invalid",
    "GIT_COMMITTER_NAME": "chaos",
    "GIT_COMMITTER_EMAIL": "chaos@orchestree.invalid",
}


# One line per finished run, for the session's closing summary (conftest.py).
TALLY: list[dict[str, Any]] = []


@dataclass
class Command:
    args: list[str]
    code: int | None
    out: str
    err: str
    seconds: float
    killed: bool = False  # the suite SIGKILLed it (a fault)
    hung: bool = False  # it ran past COMMAND_TIMEOUT_S


@dataclass
class Observed:
    plan: Plan
    repo: Path
    commands: list[Command] = field(default_factory=list)
    base_heads: list[str] = field(default_factory=list)
    samples: int = 0
    torn: list[str] = field(default_factory=list)  # tracker samples that did not parse
    injected: list[dict[str, Any]] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # faults that found nothing to hit
    leftovers: dict[int, list[str]] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    verify_records: list[dict[str, Any]] = field(default_factory=list)
    reachable: set[str] = field(default_factory=set)
    ancestry: dict[tuple[str, str], bool] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # a hostile set's observations

    def story(self) -> str:
        """What happened, for a failing test's message."""
        lines = [self.plan.describe(), f"injected: {self.injected}", f"missed: {self.missed}"]
        for cmd in self.commands:
            tail = (cmd.out + cmd.err).strip().splitlines()[-12:]
            flag = " (killed)" if cmd.killed else " (HUNG)" if cmd.hung else ""
            lines.append(f"$ orchestree {' '.join(cmd.args)} -> {cmd.code}{flag} "
                         f"in {cmd.seconds:.1f}s")  # fmt: skip
            lines += [f"    {line}" for line in tail]
        lanes = self.final.get("lanes", {})
        for lane_id, lane in sorted(lanes.items()):
            lines.append(f"  {lane_id}: {lane.get('status')} attempts={lane.get('attempts')} "
                         f"error={lane.get('error')!r}")  # fmt: skip
        return "\n".join(lines)


class ChaosRun:
    def __init__(self, plan: Plan, tmp: Path) -> None:
        self.plan = plan
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.dir = tmp / "chaos"
        self.orch = self.repo / ".orchestration"
        self.stat = self.dir / "stat"
        self.marker = f"CHAOS_RUN={uuid.uuid4().hex}"
        self.rng = random.Random(plan.seed * 7919 + 1)  # the faults' own choices
        self.seen = Observed(plan, self.repo)
        self.ns: Namespace | None = None
        self._sampling = threading.Event()
        self._errors: list[str] = []  # a fault that could not be injected: a harness bug
        name, value = self.marker.split("=", 1)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ORCHESTREE_"))}
        self.env = {**base, **IDENTITY, "CHAOS_DIR": str(self.dir), name: value}
        self.hostile = HostileSet(tmp) if plan.scenario.hostile_set else None
        if self.hostile:
            self.env["HOME"] = str(self.hostile.home)

    # --- the run ------------------------------------------------------------------------

    def run(self) -> Observed:
        self.ns = Namespace()
        sampler = threading.Thread(target=self._sample, daemon=True)
        canceller = threading.Thread(target=self._cancel_forger, daemon=True)
        try:
            self._setup()
            sampler.start()
            if self.hostile:
                canceller.start()
            self._faulted_round()
            self._resume()
            if self._cleaning:  # main moves on: cleanup, struck, removes stale templates
                self._git("commit", "-q", "--allow-empty", "-m", "the user moves main")
                self._command("cleanup", faults=list(self.plan.faults))
            if self._pooled:  # what a user does next; the spares must go, nothing else left
                self._command("cleanup")
                self.seen.extra["pool_left"] = self._pool_left()
                self.seen.extra["templates"] = self._templates()
            if self.hostile:
                canceller.join()
                self._hostile_finish()
            self._read_final()
        finally:
            self._sampling.set()
            for thread in (sampler, canceller):
                if thread.is_alive():
                    thread.join()
            if self.hostile and self.hostile.decoy and self.hostile.decoy.poll() is None:
                self.hostile.end_decoy()
            self.seen.leftovers = end_marked(self.marker)
            self.ns.close()
        return self.seen

    def _setup(self) -> None:
        assert self.ns is not None
        for sub in ("records", "locks"):
            (self.dir / sub).mkdir(parents=True)
        plan = {"lanes": {lane.lane_id: lane.to_json() for lane in self.plan.lanes}}
        if self.hostile:
            marker = self.marker.split("=", 1)[0]
            clean = {k: v for k, v in self.env.items() if k != marker}
            for lane_id, script in self.hostile.prepare(clean).items():
                plan["lanes"][lane_id]["script"] = script
        (self.dir / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        copy_proc_stat(self.stat)
        self.ns.mount("--bind", str(self.stat), "/proc/stat")
        self.repo.mkdir()
        self._git("init", "-q", "-b", "main")
        (self.repo / "README.md").write_text("# chaos\n", encoding="utf-8")
        (self.repo / "orchestree.toml").write_text(self._config(), encoding="utf-8")
        for rel, text in (self.hostile.committed_files() if self.hostile else {}).items():
            (self.repo / rel).write_text(text, encoding="utf-8")
        self._git("add", "-A")
        self._git("commit", "-q", "-m", "initial")
        if self.hostile:
            self.hostile.user_files(self.repo)
            self.seen.extra["before"] = self.hostile.snapshot(self.repo)
        if any(f.kind == "disk-full" for f in self.plan.faults):
            self.orch.mkdir()
            self.ns.mount("-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(self.orch))
        self._command("init")
        lanes = {
            lane.lane_id: {
                "name": f"chaos {lane.lane_id}",
                "tasks": [f"write {len(lane.steps)} file(s)"],
                "depends_on": lane.depends_on,
                "max_attempts": lane.max_attempts,
            }
            for lane in self.plan.lanes
        }
        spec = self.dir / "lanes.json"
        spec.write_text(json.dumps(lanes), encoding="utf-8")
        self._command("add-lane", "--from", str(spec))
        self.seen.base_heads = [self._base()]

    def _config(self) -> str:
        agent, verify = HERE / "chaos_agent.py", HERE / "chaos_verify.py"
        notify, notified = HERE / "chaos_notify.py", self.dir / "notified.jsonl"
        return (
            "[defaults]\n"
            'agent = "chaos"\n'
            f"max_parallel = {self.plan.max_parallel}\n"
            "kill_grace_s = 0.5\n"
            "timeout_s = 60\n\n"
            "[agents.chaos]\n"
            f'command = ["{sys.executable}", "{agent}", "{{lane}}"]\n\n'
            "[merge]\n"
            f'verify = "{sys.executable} {verify} {self.plan.verify_s}"\n\n'
            # Every fault also strikes the notify watcher's tracker writes and sends.
            "[notify]\n"
            f'command = "{sys.executable} {notify} {notified}"\n'
        ) + (CLEANUP_CONFIG if self._cleaning else POOL_CONFIG if self._pooled else "")

    @property
    def _pooled(self) -> bool:
        return any(f.kind in (KILL_POOL, KILL_CLEANUP) for f in self.plan.faults)

    @property
    def _cleaning(self) -> bool:
        return any(f.kind == KILL_CLEANUP for f in self.plan.faults)

    def _faulted_round(self) -> None:
        faults = self.plan.faults
        at_merge = [f for f in faults if f.kind in AT_MERGE]
        at_execute = [f for f in faults if f.kind not in (*AT_MERGE, KILL_CLEANUP)]
        self._command("execute", faults=at_execute)
        if at_merge:
            self._command("merge", faults=at_merge)

    def _resume(self) -> None:
        """Execute and merge again until every lane has settled (at most ROUNDS times)."""
        for _ in range(ROUNDS):
            if any(s in ("pending", "running") for s in self._statuses().values()):
                self._command("execute")
            if self._needs_merge() and not self.hostile:  # a hostile set merges by itself
                self._command("merge")
            statuses = self._statuses()
            if not any(s in ("pending", "running") for s in statuses.values()) and (
                self.hostile or not self._needs_merge()
            ):
                return

    # --- a hostile set (chaos_hostile.py) -----------------------------------------------

    def _cancel_forger(self) -> None:
        """Once `forge-pid` wrote the decoy's pid as its agent's, cancel its lane."""
        assert self.hostile is not None
        forged = self.hostile.signals / "forge-pid"
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while not forged.exists() and time.monotonic() < deadline:
            if self._sampling.wait(0.05):
                return
        if forged.exists():
            self._command("cancel", "forge-pid")

    def _hostile_finish(self) -> None:
        """What a user does after the run: look at it, merge (refused: two lanes bring a
        `.env`), merge the lanes one by one, clean up; then what the set left behind."""
        assert self.hostile is not None
        self._command("status")
        self._command("logs", "markup")
        self._command("merge")
        for lane in merge_lanes(self._statuses(), [lane.lane_id for lane in self.plan.lanes]):
            self._command("merge", "--lane", lane)
        self._command("cleanup")
        extra = self.seen.extra
        extra["after"] = self.hostile.snapshot(self.repo)
        extra["canary"] = exists(self.hostile.canary)
        extra["forged_branches"] = forged_branches(self.repo, self.env)
        extra["kept"] = kept(self.repo, self.env)
        extra["on_main"] = on_main(self.repo, self.env)
        extra["ignored"] = ignored_edits(self.ns.inside(self.orch) if self.ns else self.orch)
        names = ("forge-lane", "forge-pid", "liar", "nan", "markup")
        extra["signals"] = {name: self.hostile.signal(name) for name in names}
        assert self.hostile.decoy is not None
        extra["decoy_pid"] = self.hostile.decoy.pid
        extra["decoy_alive"] = self.hostile.end_decoy()

    def _pool_left(self) -> list[str]:
        """What of `[worktree] pool` is left: its folder's entries, registered worktrees;
        and copies share's stock had not finished (complete ones stay, by design)."""
        folder = self.repo / ".worktrees" / ".pool"
        left = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        listed = self._git("worktree", "list", "--porcelain").splitlines()
        cut = self.repo.glob(".orchestration/share/*/copies/*/.making-*")
        return left + [line for line in listed if "/.pool/" in line] + sorted(map(str, cut))

    def _templates(self) -> list[dict[str, Any]]:
        """`[worktree] share`'s templates left: each one's name, whether it is the one
        the current config gives on main, marked ready, and whole."""
        from orchestree import worktree_share

        home = self.repo / ".orchestration" / "share"
        setup = CLEANUP_CONFIG.split('setup = "', 1)[1].split('"\n', 1)[0]
        current = worktree_share.key_at(self.repo, self._base(), setup, ["deps"], [])
        names = {p.name.removesuffix(".lock") for p in home.iterdir()} if home.is_dir() else set()
        left = []
        for name in sorted(names):
            deps = home / name / "tree" / "deps"
            whole = deps.is_dir() and len(os.listdir(deps)) == TEMPLATE_FILES + 1
            ready = (home / name / worktree_share.READY).exists()
            left.append({"name": name, "current": name == current, "ready": ready, "whole": whole})
        return left

    def _statuses(self) -> dict[str, str]:
        return {k: str(v.get("status")) for k, v in self._tracker().get("lanes", {}).items()}

    def _needs_merge(self) -> bool:
        lanes = self._tracker().get("lanes", {})
        return any(
            lane.get("status") == "completed"
            and (lane.get("merge") or {}).get("status") != "skipped"
            for lane in lanes.values()
        )

    def _tracker(self) -> dict[str, Any]:
        assert self.ns is not None
        try:
            data: dict[str, Any] = json.loads(
                self.ns.inside(self.orch / "tracker.json").read_bytes()
            )
        except (OSError, ValueError):
            return {}
        return data

    def _read_final(self) -> None:
        seen = self.seen
        seen.final = self._tracker()
        notified = self.dir / "notified.jsonl"
        lines = notified.read_text().splitlines() if notified.exists() else []
        seen.extra["notified"] = [line for line in lines if line]
        for path in sorted((self.dir / "records").glob("*.jsonl")):
            events = [json.loads(line) for line in path.read_text().splitlines() if line]
            if path.stem == "_verify":
                seen.verify_records = events
            else:
                seen.records[path.stem] = events
        listed = self._git("rev-list", "--all", "--reflog")
        seen.reachable = set(listed.split())
        refs = self._git("for-each-ref", "--format=%(objectname)").split()
        seen.reachable |= set(self._git("rev-list", *refs).split()) if refs else set()
        heads = seen.base_heads
        for old, new in itertools.pairwise(heads):
            if old != new:
                seen.ancestry[(old, new)] = self._is_ancestor(old, new)

    # --- commands -----------------------------------------------------------------------

    def _git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=self.repo, env=self.env, capture_output=True, text=True,
            check=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        return proc.stdout.strip()

    def _is_ancestor(self, old: str, new: str) -> bool:
        proc = subprocess.run(
            ["git", "merge-base", "--is-ancestor", old, new], cwd=self.repo, env=self.env,
            capture_output=True, check=False,
        )  # fmt: skip
        return proc.returncode == 0

    def _base(self) -> str:
        return self._git("rev-parse", "refs/heads/main")

    def _command(self, *args: str, faults: list[FaultPlan] | None = None) -> Command:
        """Run `orchestree ARGS` in the namespace while `faults` strike it."""
        assert self.ns is not None
        argv = self.ns.argv([ORCHESTREE, *args, "--repo", str(self.repo)], self.repo)
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, errors="replace",
        )  # fmt: skip
        cmd = Command(list(args), None, "", "", 0.0)
        threads = [
            threading.Thread(target=self._inject, args=(f, proc, cmd), daemon=True)
            for f in faults or []
        ]
        for thread in threads:
            thread.start()
        try:
            cmd.out, cmd.err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            cmd.hung = True
            proc.kill()
            cmd.out, cmd.err = proc.communicate()
        for thread in threads:
            thread.join()
        assert not self._errors, f"a fault could not be injected: {self._errors}"
        cmd.code, cmd.seconds = proc.returncode, time.monotonic() - started
        self.seen.commands.append(cmd)
        if args[0] in ("execute", "merge"):
            self.seen.base_heads.append(self._base())
        return cmd

    # --- faults -------------------------------------------------------------------------

    def _inject(self, fault: FaultPlan, proc: subprocess.Popen[str], cmd: Command) -> None:
        try:
            self._strike(fault, proc, cmd)
        except Exception as exc:
            self._errors.append(f"{fault.kind}: {exc!r}")

    def _strike(self, fault: FaultPlan, proc: subprocess.Popen[str], cmd: Command) -> None:
        if fault.kind == KILL_CLEANUP:
            self._record(fault, self._kill_sweep(fault, proc, cmd))
            return
        verify = fault.kind in AT_MERGE
        if not self._wait(lambda: self._started(verify) >= fault.after_starts, proc):
            self.seen.missed.append(f"{fault.kind}: the command ended first")
            return
        # A verify run lasts `verify_s`: strike within its first 40 %, not after it.
        time.sleep(fault.delay * self.plan.verify_s if verify else fault.delay)
        hit: dict[str, Any] | None
        if fault.kind in ("kill-orchestrator", "kill-merge", KILL_THEN_CLOCK, KILL_POOL):
            running = [e["pid"] for e in self._running(verify=False)]
            hit = {"pid": proc.pid, "running": running} if kill(proc.pid) else None
            cmd.killed = hit is not None
            if hit and fault.kind == KILL_THEN_CLOCK:
                proc.wait()
                hit["btime"] = step_btime(self.stat, self.plan.clock_step)
        elif fault.kind == "kill-fork-server":
            hit = self._kill_fork_server(proc)
        elif fault.kind in ("kill-agent", "kill-supervisor", "kill-verify"):
            hit = self._kill_running(fault.kind, proc)
        elif fault.kind in CLOCK_STEPS:
            old, new = step_btime(self.stat, CLOCK_STEPS[fault.kind])
            hit = {"btime": [old, new]}
        elif fault.kind == "disk-full":
            hit = self._hold(fault, proc, self._fill, self._free)
        elif fault.kind == "read-only":
            hit = self._hold(fault, proc, self._read_only, self._read_write)
        else:
            raise AssertionError(f"unknown fault {fault.kind}")
        self._record(fault, hit)

    def _record(self, fault: FaultPlan, hit: dict[str, Any] | None) -> None:
        if hit is None:
            self.seen.missed.append(f"{fault.kind}: nothing to hit")
        else:
            self.seen.injected.append({"fault": fault.kind, **hit})

    def _kill_sweep(
        self, fault: FaultPlan, proc: subprocess.Popen[str], cmd: Command
    ) -> dict[str, Any] | None:
        """SIGKILL `cleanup` once it has begun to remove a stale template (its `.ready`
        goes first), a seeded moment into the removal."""
        readies = list((self.repo / ".orchestration" / "share").glob("*/.ready"))
        if not self._wait(lambda: any(not r.exists() for r in readies), proc):
            return None
        time.sleep(fault.delay / 10)  # 0-40 ms: the removal of 3 000 files and their copies
        cmd.killed = kill(proc.pid)
        return {"pid": proc.pid, "templates": len(readies)} if cmd.killed else None

    @staticmethod
    def _wait(check: Any, proc: subprocess.Popen[str], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if check():
                return True
            time.sleep(0.01)
        return False

    def _events(self, name: str) -> list[dict[str, Any]]:
        path = self.dir / "records" / f"{name}.jsonl"
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        # The last line may be half-written while we read: whole lines only.
        return [json.loads(line) for line in text.split("\n")[:-1] if line]

    def _started(self, verify: bool) -> int:
        if verify:
            return sum(e["ev"] == "start" for e in self._events("_verify"))
        return sum(
            e["ev"] == "start" for lane in self.plan.lanes for e in self._events(lane.lane_id)
        )

    def _running(self, verify: bool) -> list[dict[str, Any]]:
        """Start records of agents (or verify runs) that have not ended and still live."""
        names = ["_verify"] if verify else [lane.lane_id for lane in self.plan.lanes]
        found = []
        for name in names:
            events = self._events(name)
            ended = {e["pid"] for e in events if e["ev"] == "end"}
            for e in events:
                if e["ev"] == "start" and e["pid"] not in ended and alive(e["pid"]):
                    found.append({**e, "lane": e.get("lane") or name})
        return sorted(found, key=lambda e: (e["lane"], e.get("attempt", 0), e["pid"]))

    def _kill_running(self, kind: str, proc: subprocess.Popen[str]) -> dict[str, Any] | None:
        verify = kind == "kill-verify"
        targets: list[dict[str, Any]] = []

        def found() -> bool:
            targets[:] = self._running(verify)
            return bool(targets)

        if not self._wait(found, proc, 10.0):
            return None
        target = self.rng.choice(targets)
        pid = target["pid"]
        if kind == "kill-supervisor":
            pid = target["ppid"]
            if "orchestree.executors.supervisor" not in " ".join(cmdline(pid)):
                return None  # the agent ended meanwhile and its pid's parent is no supervisor
        if not kill(pid):
            return None
        return {"lane": target["lane"], "attempt": target.get("attempt"), "pid": pid}

    def _kill_fork_server(self, proc: subprocess.Popen[str]) -> dict[str, Any] | None:
        found: list[int] = []

        def server() -> bool:
            found[:] = [
                pid
                for pid in _children(proc.pid)
                if "--serve" in cmdline(pid) and "orchestree.executors.supervisor" in cmdline(pid)
            ]
            return bool(found)

        if not self._wait(server, proc, 10.0) or not kill(found[0]):
            return None
        return {"pid": found[0]}

    def _hold(
        self, fault: FaultPlan, proc: subprocess.Popen[str], start: Any, stop: Any
    ) -> dict[str, Any]:
        """Apply a lasting fault for `fault.hold` seconds (less if the command ends)."""
        detail: dict[str, Any] = start()
        deadline = time.monotonic() + fault.hold
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        stop()
        detail["held_s"] = round(fault.hold - max(0.0, deadline - time.monotonic()), 2)
        return detail

    def _fill(self) -> dict[str, Any]:
        assert self.ns is not None
        filler = self.ns.inside(self.orch / "chaos-fill")
        written = 0
        with filler.open("wb") as fh:
            chunk = b"\0" * 65536
            try:
                while True:
                    fh.write(chunk)
                    fh.flush()
                    written += len(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        return {"filled_bytes": written}

    def _free(self) -> None:
        assert self.ns is not None
        with contextlib.suppress(FileNotFoundError):
            self.ns.inside(self.orch / "chaos-fill").unlink()

    def _read_only(self) -> dict[str, Any]:
        assert self.ns is not None
        self.ns.mount("--bind", str(self.orch), str(self.orch))
        self.ns.mount("-o", "remount,bind,ro", str(self.orch))
        return {"read_only": str(self.orch)}

    def _read_write(self) -> None:
        assert self.ns is not None
        self.ns.umount(self.orch)

    # --- the tracker, sampled -----------------------------------------------------------

    def _sample(self) -> None:
        assert self.ns is not None
        path = self.ns.inside(self.orch / "tracker.json")
        while not self._sampling.wait(SAMPLE_S):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.seen.torn.append(f"unreadable: {exc}")
                continue
            self.seen.samples += 1
            try:
                json.loads(raw)
            except ValueError as exc:
                self.seen.torn.append(f"{exc}: {raw[:120]!r}")


def _children(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and parent_of(int(p)) == pid]
