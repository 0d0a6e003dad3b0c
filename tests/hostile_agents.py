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
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HEADER = """\
import os, shutil, subprocess, sys
from pathlib import Path
lane = sys.argv[1]
OUTSIDE = Path({outside!r})
def git(*args):
    subprocess.run(["git", *args], check=True, capture_output=True)
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


def write_agents(folder: Path, outside: Path) -> dict[str, Path]:
    """One script per scenario in `folder`; scenario -> script."""
    folder.mkdir(parents=True, exist_ok=True)
    scripts = {}
    for name, scenario in SCENARIOS.items():
        path = folder / f"hostile_{name.replace('-', '_')}.py"
        path.write_text(HEADER.format(outside=str(outside)) + scenario.body, encoding="utf-8")
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
