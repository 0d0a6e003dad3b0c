"""Issue 20's hostile set in the chaos suite: every hostile agent, together, beside honest
lanes, in one `execute` + `merge` + `cleanup` (under a fault, for the seeded variants).

The agents are `tests/hostile_agents.py`'s: `SCENARIOS` (the worktree, `.git` and merge
attacks) and `FORGERS` (the tracker attacks), one lane each, its id the scenario's
name, run by `chaos_agent.py` (so the suite's records and invariants cover them too).
`HostileSet` prepares what they attack and what must survive them: a folder outside
the repository holding another git repository, a fake `$HOME` with shell startup
files, the user's ignored `.env` and an uncommitted file in the base worktree, a
canary path that any forged command would create, and a decoy process whose pid a
forger writes as its own agent's. The invariants below judge what the run observed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from chaos_namespace import alive

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/, for hostile_agents
from hostile_agents import (
    FORGERS,
    SCENARIOS,
    Scenario,
    make_outside,
    outside_state,
    write_agents,
)

SET: dict[str, Scenario] = {**FORGERS, **SCENARIOS}  # lane id -> what its agent does
USER_ENV = "SECRET=the user's own\n"
USER_NOTES = "the user's uncommitted notes\n"
HOME_FILES = {".bashrc": "# the user's bashrc\n", ".profile": "# the user's profile\n",
              ".ssh/config": "Host *\n"}  # fmt: skip
REFUSED_SAY = "it would overwrite .env"  # merge's line for a lane bringing a .env
KEPT_OFF_MAIN = (".env", ".orchestration", ".worktrees", "victim.txt")  # never on main
ON_MAIN = ("forge-lane.txt", "liar.txt", "nan.txt", "markup.txt", "orch-file.txt")
# What orchestree must have noticed and ignored in tracker.json (events.jsonl).
IGNORED = ("lanes.evil added", "lanes.victim.status changed", "agents.agent-forge-pid.pid",
           "tracker.json (not valid JSON)")  # fmt: skip
MARKUP_SHOWN = ("[link=file:", "\\x1b[2J")  # the markup agent's text, as text
KEPT_REF = "refs/orchestree/attempts/detach/1"  # where `detach`'s own commit is kept


class HostileSet:
    """The paths of one hostile-set run, under the run's tmp folder, outside the repo."""

    def __init__(self, tmp: Path) -> None:
        self.outside = tmp / "outside"
        self.home = tmp / "home"
        self.canary = tmp / "canary"
        self.signals = tmp / "signals"
        self.agents = tmp / "hostile-agents"
        self.decoy: subprocess.Popen[bytes] | None = None

    def prepare(self, env: dict[str, str]) -> dict[str, str]:
        """Everything outside the repository; returns lane id -> agent script. The
        decoy gets `env` without the run's marker (the suite must not end it)."""
        make_outside(self.outside)
        for rel, text in HOME_FILES.items():
            (self.home / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.home / rel).write_text(text, encoding="utf-8")
        self.signals.mkdir()
        self.decoy = subprocess.Popen(
            ["sleep", "600"], env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        (self.signals / "decoy.pid").write_text(str(self.decoy.pid), encoding="utf-8")
        scripts = write_agents(self.agents, self.outside, SET, self.canary, self.signals)
        return {name: str(path) for name, path in scripts.items()}

    @staticmethod
    def committed_files() -> dict[str, str]:
        """Files of the repository's first commit: `.env` is ignored, and copied into
        every worktree (so `env-symlink`'s link would be written through)."""
        return {".gitignore": ".env\n", ".worktreeinclude": ".env\n"}

    @staticmethod
    def user_files(repo: Path) -> None:
        """The user's own files in the base worktree, never committed."""
        (repo / ".env").write_text(USER_ENV, encoding="utf-8")
        (repo / "notes.txt").write_text(USER_NOTES, encoding="utf-8")

    def snapshot(self, repo: Path) -> dict[str, Any]:
        """What no agent may change: everything outside, the fake HOME, the user's files."""
        home = {
            str(p.relative_to(self.home)): p.read_bytes().hex()
            for p in sorted(self.home.rglob("*"))
            if p.is_file()
        }
        user = {}
        for name in (".env", "notes.txt"):
            path = repo / name
            user[name] = path.read_text("utf-8") if path.is_file() else f"<{name} is gone>"
        return {"outside": outside_state(self.outside), "home": home, "user": user}

    def signal(self, name: str) -> str | None:
        """What a forger signalled (its helper exit codes), None when it never did."""
        try:
            return (self.signals / name).read_text("utf-8")
        except FileNotFoundError:
            return None

    def end_decoy(self) -> bool:
        """Whether the decoy was still alive; ends it."""
        assert self.decoy is not None
        was = alive(self.decoy.pid) and self.decoy.poll() is None
        self.decoy.kill()
        self.decoy.wait()
        return was


def merge_lanes(statuses: dict[str, str], order: list[str]) -> list[str]:
    """The lanes a user merges one by one after `merge` refused the set: every
    completed one, in plan order (a refused lane is tried too, and refused again)."""
    return [lane for lane in order if statuses.get(lane) == "completed"]


# --- invariants (registered in chaos_invariants.INVARIANTS) -------------------------------


def _lanes(seen: Any) -> dict[str, dict[str, Any]]:
    lanes: dict[str, dict[str, Any]] = seen.final.get("lanes", {})
    return lanes


def _command(seen: Any, *args: str) -> list[Any]:
    return [c for c in seen.commands if tuple(c.args[: len(args)]) == args]


def hostile_outcome(seen: Any) -> list[str]:
    """Each hostile lane ended as its scenario says: failed or held with one line naming
    what its agent did, merged only when what it left is harmless; the refused merges
    named the lane and the `.env`; detach's own commit is kept after `cleanup`."""
    found = []
    lanes = _lanes(seen)
    for name, scenario in SET.items():
        lane = lanes.get(name) or {}
        status, error = lane.get("status"), lane.get("error") or ""
        merge = (lane.get("merge") or {}).get("status")
        want = {"merged": "merged", "skipped": "completed", "refused": "completed"}.get(
            scenario.merge, scenario.status
        )
        if status != want:
            found.append(f"lane {name} is {status}, not {want}: {error!r}")
        elif scenario.says not in error:
            found.append(f"lane {name}'s error {error!r} does not say {scenario.says!r}")
        if scenario.merge == "refused":
            said = [c for c in _command(seen, "merge", "--lane", name) if REFUSED_SAY in c.err]
            if not said or any(c.code != 3 for c in said):
                found.append(f"`merge --lane {name}` did not refuse with exit 3, naming .env")
        if scenario.merge == "skipped" and merge == "merged":
            found.append(f"lane {name}, which commits orchestree's paths, was merged")
    on_main = seen.extra.get("on_main", [])
    for path in on_main:
        if path.split("/")[0] in KEPT_OFF_MAIN:
            found.append(f"{path} was merged onto main")
    found += [f"{path} is not on main" for path in ON_MAIN if path not in on_main]
    first = _command(seen, "merge")[:1]
    if not first or first[0].code != 3 or REFUSED_SAY not in first[0].err:
        found.append("the first `merge` did not refuse the set (exit 3) naming a .env")
    if not seen.extra.get("kept"):
        found.append(f"detach's own commit is not kept under {KEPT_REF} after cleanup")
    if not any(c.code == 0 for c in _command(seen, "cleanup")):
        found.append("`cleanup` did not end with exit 0")
    return found


def outside_intact(seen: Any) -> list[str]:
    """Nothing outside the repository changed: the other repository, the fake HOME."""
    before, after = seen.extra["before"], seen.extra["after"]
    found = []
    for part in ("outside", "home"):
        changed = sorted(
            k for k in before[part].keys() | after[part].keys()
            if before[part].get(k) != after[part].get(k)
        )  # fmt: skip
        if changed:
            found.append(f"{part} changed: {', '.join(changed[:8])}")
    return found


def user_files_intact(seen: Any) -> list[str]:
    """The user's ignored `.env` and uncommitted notes in the base worktree are intact."""
    before, after = seen.extra["before"]["user"], seen.extra["after"]["user"]
    return [f"the user's {k} is now {after[k]!r}" for k in before if before[k] != after[k]]


def nothing_unplanned(seen: Any) -> list[str]:
    """No command ran that the configuration did not name: the forged lanes and tasks
    never ran (the canary never appeared, no branch for them), and the helper refused
    every forged update (exit 2) while it took the markup lane's own progress."""
    found = []
    if seen.extra.get("canary"):
        found.append("the canary exists: a forged command ran")
    if seen.extra.get("forged_branches"):
        found.append(f"branches of forged lanes exist: {seen.extra['forged_branches']}")
    ignored = seen.extra.get("ignored", [])
    for edit in IGNORED:
        if not any(i.startswith(edit) for i in ignored):
            found.append(f"orchestree never noticed and ignored the edit {edit!r}")
    wanted = {"forge-lane": "[2, 2]", "liar": "2", "nan": "[2, 2]", "markup": "0"}
    for name, codes in wanted.items():
        got = seen.extra["signals"].get(name)
        if got != codes:
            found.append(f"{name}'s helper calls exited {got}, not {codes}")
    return found


def decoy_alive(seen: Any) -> list[str]:
    """`cancel` of the lane whose agent forged its pid never signalled the forged pid."""
    found = []
    if seen.extra["signals"].get("forge-pid") is None:
        found.append("forge-pid never forged its pid (the scenario proves nothing)")
    cancels = _command(seen, "cancel", "forge-pid")
    if len(cancels) != 1 or cancels[0].code != 0:
        found.append(f"`cancel forge-pid` did not run once with exit 0: {cancels}")
    elif f"pid {seen.extra['decoy_pid']}" in cancels[0].out + cancels[0].err:
        found.append("`cancel forge-pid` names the decoy's pid")
    if not seen.extra.get("decoy_alive"):
        found.append("the decoy process, whose pid an agent forged, was killed")
    return found


def shown_as_text(seen: Any) -> list[str]:
    """`status` and `logs` show the markup agent's text as text: no raw escape or bell."""
    found = []
    for args in (("status",), ("logs", "markup")):
        for cmd in _command(seen, *args):
            if cmd.code != 0:
                found.append(f"`orchestree {' '.join(args)}` exited {cmd.code}: {cmd.err!r}")
            raw = [c for c in ("\x1b", "\x07") if c in cmd.out + cmd.err]
            if raw:
                found.append(f"`orchestree {' '.join(args)}` wrote raw {raw!r} to the terminal")
            missing = [t for t in MARKUP_SHOWN if t not in cmd.out]
            if missing:
                found.append(f"`orchestree {' '.join(args)}` does not show {missing} as text")
        if not _command(seen, *args):
            found.append(f"`orchestree {' '.join(args)}` never ran")
    return found


def honest_merged(seen: Any) -> list[str]:
    """The honest lanes beside the hostile set all merged, their work on the base."""
    return [
        f"honest lane {lane.lane_id} is {_lanes(seen).get(lane.lane_id, {}).get('status')}"
        for lane in seen.plan.lanes
        if lane.script is None and _lanes(seen).get(lane.lane_id, {}).get("status") != "merged"
    ]


INVARIANTS = {
    "hostile-outcome": hostile_outcome,
    "outside-intact": outside_intact,
    "user-files-intact": user_files_intact,
    "nothing-unplanned": nothing_unplanned,
    "decoy-alive": decoy_alive,
    "shown-as-text": shown_as_text,
    "honest-merged": honest_merged,
}


def forged_branches(repo: Path, env: dict[str, str]) -> list[str]:
    """Branches named after a lane no one planned (`lane-evil`)."""
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/heads/lane-evil*"],
        cwd=repo, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


def on_main(repo: Path, env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "main"],
        cwd=repo, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.splitlines()


def ignored_edits(orchestration: Path) -> list[str]:
    """Every edit of tracker.json that orchestree recorded as ignored."""
    try:
        lines = (orchestration / "events.jsonl").read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    events = [json.loads(line) for line in lines if line.strip()]
    return [i for e in events if e.get("event") == "edit-ignored" for i in e["ignored"]]


def kept(repo: Path, env: dict[str, str]) -> bool:
    """`detach`'s own commit is kept, with its work."""
    proc = subprocess.run(
        ["git", "show", f"{KEPT_REF}:detach.txt"],
        cwd=repo, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.returncode == 0 and proc.stdout == "detached work"


def exists(path: Path) -> bool:
    return os.path.lexists(path)
