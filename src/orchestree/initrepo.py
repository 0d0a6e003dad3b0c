"""`init`'s work on the repository: checks, excludes, the helper, the empty tracker.

Standard library, `git`, `layout` and the tracker store only (no pydantic, no
config models): the first `orchestree init` in a repository without an
`orchestree.toml` runs from here alone, so it starts about as fast as Typer (issue
18). Everything else (a config file to validate, a tracker already there to check)
goes through `orchestrator.init`, which calls the same steps.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any, NamedTuple

from orchestree import access_tracker as store
from orchestree import git
from orchestree.errors import EnvironmentRefused, LockTimeout, UserError
from orchestree.layout import AGENT_EXCLUDES, CONFIG_FILE, EXCLUDES, Layout

TRACKER_VERSION = "1.0.0"  # models.TRACKER_VERSION; a test keeps the two equal


class Prepared(NamedTuple):
    """What `prepare` found and did: the base branch and commit, excludes added."""

    base_branch: str
    base_commit: str
    excludes_added: list[str]


def check_worktree_root(root: Path, value: str, ask_git: bool = True) -> None:
    """Refuse (exit 2) a `[worktree] root` that is not an untracked folder in the repo."""
    from orchestree.worktree_guard import worktree_root_problem

    problem = worktree_root_problem(root, value, ask_git)
    if problem:
        raise UserError(f"{root / CONFIG_FILE}: {problem}")


def prepare(layout: Layout, base_branch: str | None) -> Prepared:
    """Check the repository can take lanes, then create the folders, excludes and helper.

    `base_branch` is `[defaults] base_branch` (None: the current branch).
    """
    root = layout.root
    head = git.head_commit(root)
    if head is None:
        raise EnvironmentRefused(
            f"{root} has no commits yet; make a first commit, then run `orchestree init`"
        )
    branch = base_branch or git.current_branch(root)
    if branch is None:
        raise EnvironmentRefused(
            f"{root} has a detached HEAD; check out the branch lanes should merge into "
            "(or set [defaults] base_branch in orchestree.toml)"
        )
    # The current branch's commit is HEAD's, asked above; a configured one is looked up.
    base_commit = head if base_branch is None else git.head_commit(root, f"refs/heads/{branch}")
    if base_commit is None:
        raise UserError(f"base branch {branch!r} does not exist in {root}")
    check_worktree_root(root, layout.worktree_root)  # before it is excluded from git
    layout.logs.mkdir(parents=True, exist_ok=True)
    # No trailing slash: a root-anchored pattern must match a file of that name too.
    worktree_excl = f"/{layout.rel(layout.worktrees).strip('/')}"
    added = git.add_excludes(root, [*EXCLUDES, worktree_excl, *AGENT_EXCLUDES])
    install_helper(layout)
    return Prepared(branch, base_commit, added)


def install_helper(layout: Layout) -> None:
    """Place the stdlib helper agents call, refreshed so it matches this version.

    Read-only (0555: readable and executable, never writable) and outside every
    worktree: it is the file the Claude preset pre-approves running, so no agent may
    rewrite it. Replaced whole (a temp file, then a rename), so a changed or
    read-only old copy is never written through.
    """
    source = Path(store.__file__)
    target = layout.helper
    current = target.read_bytes() if target.is_file() and not target.is_symlink() else None
    if current == source.read_bytes() and stat.S_IMODE(target.stat().st_mode) == 0o555:
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, tmp)
    tmp.chmod(0o555)
    os.replace(tmp, target)


def empty_tracker(root: Path, prepared: Prepared) -> dict[str, Any]:
    """A new tracker as `models.Tracker(...).model_dump(mode="json")` writes it."""
    now = store.now_iso()
    return {
        "version": TRACKER_VERSION,
        "phase": 0,
        "status": "initialised",
        "repo": str(root),
        "base_branch": prepared.base_branch,
        "base_commit": prepared.base_commit,
        "created_at": now,
        "updated_at": now,
        "radar": [],
        "limits": None,  # the run's clock, from its first execute (limits.py)
        "notify": None,  # what notify.py sent, from its first event
        "agents": {},
        "lanes": {},
    }


def say_waiting(holder: int | None) -> None:
    """What a command says after a second of waiting for the tracker lock."""
    who = f"process {holder}" if holder else "another process"
    print(f"orchestree: waiting for the tracker lock held by {who}...", file=sys.stderr)


def init_fresh(path: Path) -> Layout | None:
    """The first `init` of a repository without `orchestree.toml`, with no pydantic.

    Returns the layout when it created the tracker; None when there is a config file
    to validate or a tracker to check (then `orchestrator.init` does it all).
    """
    root = git.repo_root(path.resolve())
    layout = Layout(root)
    if (root / CONFIG_FILE).exists() or layout.tracker.exists():
        return None
    prepared = prepare(layout, None)
    lock_path, events_path = store.paths(str(layout.tracker))
    try:
        with store.locked(lock_path, on_wait=say_waiting):
            if layout.tracker.exists():  # another `init` won the race: keep its tracker
                return None
            store.write_owned(str(layout.tracker), empty_tracker(root, prepared))
            store.append_event(events_path, {"actor": "orchestree", "event": "init"})
    except store.LockTimeoutError as exc:
        raise LockTimeout(str(exc)) from None
    return layout
