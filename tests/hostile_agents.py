"""Scripted hostile agents: each does one ordinary thing that used to subvert orchestree.

Each `Scenario` is a small Python agent (run by `orchestree execute` as a real
subprocess, in its lane's worktree, with its lane id as `argv[1]`) and what must
come of it: the lane's status after `execute`, a phrase its one-line error holds,
and what `merge` does with it. The tests in `tests/test_hostile_*.py` run them one
by one; the chaos suite can import `SCENARIOS`, `write_agents` and `hostile_config`
to run them all together.

`outside` is a folder outside the repository (another git repository lives in
`outside/other`; `outside/secret-target` and `outside/secret-dir` are where symlinks
point): after a run, nothing there may have changed (`outside_state`).

`FORGERS` are agents that attack the tracker instead (the cases of `test_trust.py`, as
scripts that run together): a forged lane and a forged task whose command would create
`CANARY`, a forged pid (the pid written to `SIGNALS/decoy.pid`), another lane's status,
NaN, Infinity and `{"attempts": "lots"}`, Rich markup and escape sequences. They signal
each other and the harness through files in `SIGNALS`; `write_agents(..., FORGERS,
canary=..., signals=...)` writes them.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HEADER = """\
import json, os, shutil, subprocess, sys, time
from pathlib import Path
lane = sys.argv[1]
OUTSIDE = Path({outside!r})
CANARY = Path({canary!r})  # a forged command would create it: it must never exist
SIGNALS = Path({signals!r})  # files the forgers and the harness signal each other with
def git(*args):
    subprocess.run(["git", *args], check=True, capture_output=True)
def tracker():
    return Path(os.environ["ORCHESTREE_TRACKER"])
def wait_for(cond, seconds=30.0):
    # Polls `cond(tracker data)` (or `cond(None)` once the tracker is unreadable).
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = json.loads(tracker().read_text())
        except ValueError:
            data = None
        if cond(data):
            return data
        time.sleep(0.02)
    return None
def write_directly(data):
    # Straight into tracker.json, no helper, no lock (atomically, so only the edit
    # itself is hostile, never a torn file).
    tmp = tracker().with_name(f".forged-{{lane}}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, tracker())
def persist(forge, noticed, tries=25):
    # Repeats a direct edit until orchestree's events name it: an edit written between
    # orchestree's own read and write of the file is lost, not ignored, and proves nothing.
    events = tracker().with_name("events.jsonl")
    for _ in range(tries):
        forge()
        time.sleep(0.2)
        if events.exists() and noticed in events.read_text():
            return
def helper(update):
    proc = subprocess.run(["python3", "access_tracker.py", str(tracker()), json.dumps(update)],
                          capture_output=True, text=True)
    return proc.returncode
"""


@dataclass(frozen=True)
class Scenario:
    body: str  # the agent's Python, after HEADER
    status: str  # the lane's status after `execute`
    says: str  # a phrase its error holds ("" when it has none)
    merge: str  # after `merge`: merged | skipped | refused (exit 3) | none (not mergeable)


SCENARIOS: dict[str, Scenario] = {
    # A FILE named like orchestree's folders: excluded, never committed, never merged.
    "orch-file": Scenario(
        body='Path(".worktrees").write_text("x")\n'
        'Path(".orchestration").write_text("x")\n'
        'Path(f"{lane}.txt").write_text("work")\n',
        status="completed",
        says="",
        merge="merged",
    ),
    # Commits orchestree's paths itself: the lane is held at merge, paths named.
    "commits-orch-paths": Scenario(
        body='Path(".worktrees/agent-x").mkdir(parents=True)\n'
        'Path(".worktrees/agent-x/README.md").write_text("overwritten")\n'
        'git("add", "-f", ".worktrees/agent-x/README.md")\n'
        'git("commit", "-qm", "mine")\n',
        status="completed",
        says="",
        merge="skipped",
    ),
    # Un-ignores the user's .env and the tracker: the leftover commit takes neither.
    "unignore": Scenario(
        body='Path(".gitignore").write_text("!/.env\\n!/.orchestration/\\n")\n'
        'Path(".env").write_text("SECRET=agent\\n")\n'
        'Path(".orchestration").mkdir(exist_ok=True)\n'
        'Path(".orchestration/tracker.json").write_text("{}")\n'
        'Path(f"{lane}.txt").write_text("work")\n',
        status="completed",
        says="",
        merge="merged",
    ),
    # Commits the user's .env on purpose: merge refuses to overwrite the ignored file.
    "commits-env": Scenario(
        body='Path(".env").write_text("SECRET=agent\\n")\n'
        'git("add", "-f", ".env")\n'
        'git("commit", "-qm", "env")\n',
        status="completed",
        says="",
        merge="refused",
    ),
    # Leaves its branch: commits on a detached HEAD are kept and named.
    "detach": Scenario(
        body='git("checkout", "-q", "--detach")\n'
        'Path(f"{lane}.txt").write_text("detached work")\n'
        'git("add", "-A")\n'
        'git("commit", "-qm", "off the branch")\n',
        status="failed",
        says="detached its worktree's HEAD",
        merge="none",
    ),
    # Deletes its worktree's .git link: nothing may be committed in the base repository.
    "delete-dotgit": Scenario(
        body='os.remove(".git")\nPath(f"{lane}.txt").write_text("work")\n',
        status="failed",
        says="deleted",
        merge="none",
    ),
    # Points its .git link at another repository's admin folder.
    "rewrite-dotgit": Scenario(
        body="Path(\".git\").write_text(f\"gitdir: {OUTSIDE / 'other' / '.git'}\\n\")\n"
        'Path(f"{lane}.txt").write_text("work")\n',
        status="failed",
        says="rewrote",
        merge="none",
    ),
    # Replaces its worktree with a symlink to another repository.
    "symlink-worktree": Scenario(
        body="here = Path.cwd()\n"
        'os.chdir("/")\n'
        "shutil.rmtree(here)\n"
        'os.symlink(OUTSIDE / "other", here)\n',
        status="failed",
        says="symlink",
        merge="none",
    ),
    # Commits `.env` (and the folder `conf`) as symlinks out of the repository, for a
    # dependent lane's `.worktreeinclude` copy to write through.
    "env-symlink": Scenario(
        body='Path(".env").unlink(missing_ok=True)\n'
        'os.symlink(OUTSIDE / "secret-target", ".env")\n'
        'shutil.rmtree("conf", ignore_errors=True)\n'
        'os.symlink(OUTSIDE / "secret-dir", "conf")\n'
        'git("add", "-f", ".env", "conf")\n'
        'git("commit", "-qm", "env link")\n',
        status="completed",
        says="",
        merge="refused",
    ),
}


# Agents that forge the tracker (docs/trust.md). Their lane ids are their names: `liar`
# lies about the lane `victim`, so both run in the same run.
FORGERS: dict[str, Scenario] = {
    # Adds lanes (one with a newline in its id) and rewrites every pending lane's command
    # to `touch CANARY`, through the helper and straight into the file: none of it runs.
    "forge-lane": Scenario(
        body='evil = {"name": "evil", "agent": "shell", "tasks": [f"touch {CANARY}"]}\n'
        'codes = [helper({"lanes": {"evil": evil}}),\n'
        '         helper({"lanes": {"victim": {"agent": "shell", "tasks": evil["tasks"]}}})]\n'
        "def forge():\n"
        "    data = wait_for(lambda d: d is not None and 'lanes' in d)\n"
        '    for other in data["lanes"].values():\n'
        '        if other.get("status") == "pending":\n'
        '            other.update(agent="shell", tasks=evil["tasks"])\n'
        '    data["lanes"]["evil"] = dict(evil, status="pending")\n'
        '    data["lanes"]["evil\\n"] = dict(evil, status="pending")\n'
        "    write_directly(data)\n"
        'persist(forge, "lanes.evil added")\n'
        '(SIGNALS / "forge-lane").write_text(json.dumps(codes))\n'
        'Path(f"{lane}.txt").write_text("work")\n',
        status="completed",
        says="",
        merge="merged",
    ),
    # Writes the decoy's pid (and start time) as its own agent's: `cancel` must not
    # signal the decoy. It waits to be cancelled.
    "forge-pid": Scenario(
        body="import psutil\n"
        'decoy = int((SIGNALS / "decoy.pid").read_text())\n'
        'me = "agent-" + lane\n'
        "def forge():\n"
        '    data = wait_for(lambda d: d is not None and (d["agents"].get(me) or {}).get("pid"))\n'
        "    started = psutil.Process(decoy).create_time()\n"
        '    data["agents"][me].update(pid=decoy, pid_started=started)\n'
        "    write_directly(data)\n"
        'persist(forge, f"agents.{me}.pid")\n'
        '(SIGNALS / "forge-pid").write_text("forged")\n'
        "time.sleep(60)\n",
        status="cancelled",
        says="",
        merge="none",
    ),
    # Marks the running lane `victim` completed (helper and file), then lets it fail.
    "liar": Scenario(
        body="wait_for(lambda d: d is not None and "
        'd["lanes"].get("victim", {}).get("status") == "running", 20)\n'
        'code = helper({"lanes": {"victim": {"status": "completed"}}})\n'
        "def forge():\n"
        "    data = wait_for(lambda d: d is not None)\n"
        '    data["lanes"]["victim"]["status"] = "completed"\n'
        '    if "agent-victim" in data["agents"]:\n'
        '        data["agents"]["agent-victim"]["status"] = "completed"\n'
        "    write_directly(data)\n"
        'persist(forge, "lanes.victim.status changed")\n'
        '(SIGNALS / "liar").write_text(str(code))\n'
        'Path("liar.txt").write_text("mine")\n',
        status="completed",
        says="",
        merge="merged",
    ),
    "victim": Scenario(
        body='Path("victim.txt").write_text("half-done work")\n'
        "for _ in range(1500):\n"
        '    if (SIGNALS / "liar").exists():\n'
        "        break\n"
        "    time.sleep(0.02)\n"
        'sys.exit("the victim fails")\n',
        status="failed",
        says="",
        merge="none",
    ),
    # NaN, Infinity, 1e400 and {"attempts": "lots"}: refused by the helper, ignored in
    # the file.
    "nan": Scenario(
        body='codes = [helper({"lanes": {lane: {"attempts": "lots"}}}),\n'
        '         helper({"lanes": {lane: {"progress": float("nan")}}})]\n'
        "def forge(bad):\n"
        "    data = wait_for(lambda d: d is not None)\n"
        '    data["lanes"][lane].update(progress="@@", attempts="lots")\n'
        '    tmp = tracker().with_name(f".forged-{lane}")\n'
        "    tmp.write_text(json.dumps(data).replace('\"@@\"', bad))\n"
        "    os.replace(tmp, tracker())\n"
        'persist(lambda: forge("NaN"), "not valid JSON")\n'
        'for bad in ("Infinity", "1e400"):\n'
        "    forge(bad)\n"
        "    time.sleep(0.2)\n"
        '(SIGNALS / "nan").write_text(json.dumps(codes))\n'
        'Path(f"{lane}.txt").write_text("work")\n',
        status="completed",
        says="",
        merge="merged",
    ),
    # Rich markup and escape sequences in its progress and its output: shown as text.
    # Its progress is set once the other forgers are done: a direct write of the whole
    # file from an older read would put its earlier progress back.
    "markup": Scenario(
        body='text = "[link=file:///etc/passwd]click[/link] \\x1b[2J\\x1b]0;owned\\x07 [bold]x"\n'
        "for _ in range(300):\n"
        '    if all((SIGNALS / n).exists() for n in ("forge-lane", "forge-pid", "liar", "nan")):\n'
        "        break\n"
        "    time.sleep(0.1)\n"
        'code = helper({"lanes": {lane: {"progress": text}}})\n'
        "print(text, flush=True)\n"
        '(SIGNALS / "markup").write_text(str(code))\n'
        'Path(f"{lane}.txt").write_text("work")\n',
        status="completed",
        says="",
        merge="merged",
    ),
}


def write_agents(
    folder: Path,
    outside: Path,
    scenarios: dict[str, Scenario] = SCENARIOS,
    canary: Path | None = None,
    signals: Path | None = None,
) -> dict[str, Path]:
    """One script per scenario in `folder`; scenario -> script. `canary` and `signals`
    (for `FORGERS`) default to `outside`'s siblings `canary` and `signals/`."""
    folder.mkdir(parents=True, exist_ok=True)
    header = HEADER.format(
        outside=str(outside),
        canary=str(canary or outside.parent / "canary"),
        signals=str(signals or outside.parent / "signals"),
    )
    scripts = {}
    for name, scenario in scenarios.items():
        path = folder / f"hostile_{name.replace('-', '_')}.py"
        path.write_text(header + scenario.body, encoding="utf-8")
        scripts[name] = path
    return scripts


def hostile_config(scripts: dict[str, Path]) -> str:
    """`[agents.<scenario>]` sections running each script with the lane id."""
    return "".join(
        f'\n[agents.{name}]\ncommand = ["{sys.executable}", "{path}", "{{lane}}"]\n'
        for name, path in scripts.items()
    )


def make_outside(outside: Path) -> None:
    """Another repository with one commit, beside the one orchestree runs in, and an
    empty folder a symlink may point at."""
    other = outside / "other"
    other.mkdir(parents=True)
    (outside / "secret-dir").mkdir()
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *args], cwd=other, check=True, capture_output=True)


def outside_state(outside: Path) -> dict[str, str]:
    """Every file under `outside` (its other repository's objects and refs included),
    with the other repository's HEAD and status: equal before and after a run."""
    state = {
        str(p.relative_to(outside)): p.read_bytes().hex()
        for p in sorted(outside.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }
    other = outside / "other"
    for args in (["rev-parse", "HEAD"], ["status", "--porcelain", "--untracked-files=all"]):
        proc = subprocess.run(  # --no-optional-locks: git status must not rewrite the index
            ["git", "--no-optional-locks", *args],
            cwd=other,
            capture_output=True,
            text=True,
            check=False,
        )
        state[" ".join(args)] = proc.stdout
    return state
