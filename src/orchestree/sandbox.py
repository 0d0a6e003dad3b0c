"""A filesystem sandbox per lane (DESIGN.md §15): bubblewrap as an argv prefix.

The orchestrator describes the sandbox of one attempt as plain JSON data (`plan`); the
supervisor, which stays outside the sandbox, turns it into the `bwrap` argv that
prefixes the agent's (`wrap`) once the worktree exists, and guards the refs around
the agent's run (`snapshot_refs`, `restore_refs`). Inside, the agent sees `/`
read-only except:

- its worktree, and what git needs to commit there: the object store, the worktree's
  own admin folder (`.git/worktrees/<name>`), the refs and their logs;
- a private `/tmp`, and the agent's own config and cache folders (`writable`);
- of `.orchestration/`, only what the tracker helper writes: tracker.json (and its
  `.bak`), its lock and the events. `ledger/ledger.key` reads as an empty file there.

Refs are the one thing a bind mount cannot draw: git moves a branch by writing a lock
file in the shared refs folder, so a writable refs folder lets the agent move `main`
too. The supervisor therefore snapshots every ref but the lanes' own before the agent
starts and restores any that moved when it exits; the lane names what was restored.

bwrap runs with `--die-with-parent` as the supervisor's child (so it stays in the
tree the supervisor ends), in new PID and IPC namespaces and with every capability
dropped: root inside keeps no `CAP_SYS_ADMIN` to remount `/` writable (measured: with
capabilities kept, `mount -o remount,rw /` succeeds inside).

Standard library and `orchestree.git` only: the supervisor imports it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from orchestree import git, procs

KINDS = ("none", "bwrap")
PROGRAM = "bwrap"
INSTALL = "install bubblewrap (apt-get install bubblewrap)"
TURN_OFF = 'set [sandbox] kind = "none" in orchestree.toml'
# What the tracker helper writes in `.orchestration/` (access_tracker.py): the rest
# of that folder is bound read-only over itself, and the ledger's key is hidden.
HELPER_WRITES = frozenset({"tracker.json", "tracker.json.bak", "tracker.lock", "events.jsonl"})
HIDDEN = ("ledger/ledger.key",)
# What a hidden file shows inside: an empty file (a device such as /dev/null cannot be
# opened there, bwrap's binds are `nodev`).
EMPTY = "sandbox-empty"
# Folders orchestree creates in `.orchestration/` later: made before the agent starts,
# so they are bound read-only too rather than left for the agent to create.
ORCH_FOLDERS = ("logs", "runs", "cancel", "archive")
# Lane branches move while another lane's agent runs (their own agents commit), and
# orchestree keeps attempts under its own namespace: neither is restored.
UNGUARDED = ("refs/heads/lane-", "refs/orchestree/")


def plan(
    kind: str,
    network: bool,
    root: Path,
    common_dir: Path,
    orch: Path,
    writable: list[str],
) -> dict[str, Any] | None:
    """The JSON-able description of one attempt's sandbox, or None for `kind = "none"`.

    `writable` are the agent's own folders (`~` is the user's home); a folder that does
    not exist yet is created, so the agent can use it (its parent is read-only)."""
    if kind == "none":
        return None
    home = Path.home()
    return {
        "kind": kind,
        "network": network,
        "root": str(root.resolve()),
        "common_dir": str(common_dir.resolve()),
        "orch": str(orch.resolve()),
        "home": str(home),
        "writable": [_expand(entry, home) for entry in writable],
    }


def _expand(entry: str, home: Path) -> str:
    if entry == "~" or entry.startswith("~/"):
        return str(home / entry[2:]) if entry != "~" else str(home)
    return entry


def wrap(box: dict[str, Any] | None, argv: list[str], cwd: str) -> list[str]:
    """`argv` run inside the sandbox `box` describes, in the worktree `cwd`; `argv`
    itself when there is no sandbox. Creates the agent's missing folders first."""
    if not box:
        return argv
    worktree = Path(cwd).resolve()
    admin = Path(git.out("rev-parse", "--absolute-git-dir", cwd=worktree))
    orch = Path(box["orch"])
    for name in ORCH_FOLDERS:
        (orch / name).mkdir(parents=True, exist_ok=True)
    # git logs each ref update there; a folder it cannot create fails the commit.
    (Path(box["common_dir"]) / "logs").mkdir(exist_ok=True)
    for entry in box["writable"]:
        _ensure(Path(entry))
    empty = orch / "runs" / EMPTY
    if not empty.is_file() or empty.stat().st_size:  # replaced whole: lanes bind it meanwhile
        made = empty.with_name(f".{EMPTY}.{os.getpid()}.tmp")
        made.write_bytes(b"")
        os.replace(made, empty)
    shown = _programs_under_tmp([argv[0], *os.environ.get("PATH", "").split(os.pathsep)])
    return [*bwrap_args({**box, "show": shown}, worktree, admin), "--", *argv]


def _programs_under_tmp(places: list[str]) -> list[str]:
    """The folders that hold the agent's program and the PATH's programs, where they
    live under /tmp, which the private /tmp would hide: a program's folder's parent,
    so a virtualenv's `bin/` keeps its `pyvenv.cfg` and `lib/` beside it."""
    shown: list[str] = []
    for place in places:
        if not place or not os.path.isabs(place):
            continue
        folder = place if os.path.isdir(place) else os.path.dirname(place)
        parent = os.path.dirname(os.path.normpath(folder))
        if parent.startswith("/tmp/") and parent not in shown:
            shown.append(parent)
    return shown


def _ensure(path: Path) -> None:
    """A missing folder the agent may write is made (a name with a suffix, such as
    `~/.claude.json`, is a file: made empty only when its folder exists)."""
    if path.exists() or path.is_symlink():
        return
    if path.suffix:
        return  # bound with --bind-try: absent, the agent cannot create it
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def bwrap_args(box: dict[str, Any], worktree: Path, admin: Path) -> list[str]:
    """The bwrap options: `/` read-only, a private /tmp, then the writable binds (a
    later bind wins), then `.orchestration/` narrowed back to what the helper writes."""
    common, orch = Path(box["common_dir"]), Path(box["orch"])
    args = [PROGRAM, "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
    args += ["--cap-drop", "ALL"]
    if not box["network"]:
        args.append("--unshare-net")
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # What lives under /tmp (a repository there, a test's home) is hidden by the
    # private /tmp: show it again, read-only.
    for seen in (box["root"], str(common), box["home"], *box.get("show", [])):
        args += ["--ro-bind-try", seen, seen]
    for path in (worktree, common / "objects", common / "refs", common / "logs", admin):
        args += ["--bind-try", str(path), str(path)]
    for entry in box["writable"]:
        args += ["--bind-try", entry, entry]
    args += ["--bind", str(orch), str(orch)]
    for item in sorted(os.listdir(orch)):
        # A writer's temp file (`.<name>.<pid>...tmp`): the helper's next write sweeps
        # it, which a read-only bind would refuse.
        if item not in HELPER_WRITES and not (item.startswith(".") and item.endswith(".tmp")):
            # -try: a writer's temp file may be renamed away meanwhile.
            args += ["--ro-bind-try", str(orch / item), str(orch / item)]
    # Files bound one by one are never replaced by a rename while bwrap binds them: the
    # key is written once (the ledger, rewritten on every change, is seen as its folder).
    for hidden in HIDDEN:
        if (orch / hidden).exists():
            args += ["--ro-bind", str(orch / "runs" / EMPTY), str(orch / hidden)]
    # The agent's temporary files go to its private /tmp, wherever TMPDIR pointed.
    args += ["--setenv", "TMPDIR", "/tmp", "--chdir", str(worktree)]
    return args


def snapshot_refs(box: dict[str, Any] | None, root: Path) -> dict[str, str]:
    """Every guarded ref and its commit, before the agent starts ({} without a sandbox:
    then the agent could rewrite the refs' files any way it liked)."""
    if not box:
        return {}
    return {ref: sha for ref, sha in git.all_refs(root).items() if not ref.startswith(UNGUARDED)}


def restore_refs(box: dict[str, Any] | None, root: Path, before: dict[str, str]) -> list[str]:
    """Put back every guarded ref the agent moved, made or deleted; their names."""
    if not box:
        return []
    return _put_back(root, before)


def saved_refs_file(runs: Path, lane_id: str, attempt: int) -> Path:
    """Where the supervisor keeps the guarded refs while its agent runs (read-only in
    the sandbox): if it dies before it restores them, the orchestrator does."""
    return runs / f"{lane_id}.{attempt}.refs.json"


def save_refs(path: Path, before: dict[str, str]) -> None:
    """Keep `before` at `path` (atomically: a kill leaves the old file or the new)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(before, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def restore_saved(root: Path, path: Path) -> list[str]:
    """Put back the refs a supervisor saved at `path` and could not restore itself (it
    was killed while its agent ran), then forget them; their names."""
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except ValueError:  # written atomically: never torn, but never trusted blindly
        before = None
    restored = _put_back(root, before) if _is_refs(before) else []
    path.unlink(missing_ok=True)
    return restored


def _is_refs(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and k.startswith("refs/") and isinstance(v, str) and len(v) >= 40
        for k, v in value.items()
    )


def _put_back(root: Path, before: dict[str, str]) -> list[str]:
    now = {ref: sha for ref, sha in git.all_refs(root).items() if not ref.startswith(UNGUARDED)}
    restored: list[str] = []
    for ref in sorted(set(before) | set(now)):
        if before.get(ref) == now.get(ref):
            continue
        if ref in before:
            git.set_ref(root, ref, before[ref])
        else:
            git.delete_ref(root, ref)
        restored.append(ref)
    return restored


def unavailable(kind: str) -> str | None:
    """Why the sandbox `kind` cannot run here (one line: what to install or how to turn
    it off), or None when it can. Tries a real `bwrap` with the namespaces we use."""
    if kind == "none":
        return None
    if shutil.which(PROGRAM) is None:
        return (
            f"[sandbox] kind = {kind!r} needs `bwrap`, not found on PATH: {INSTALL}, or {TURN_OFF}"
        )
    probe = [PROGRAM, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL"]
    probe += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "true"]
    try:
        done = procs.run(probe, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`bwrap` cannot run here ({exc}); {TURN_OFF}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        why = said[-1] if said else f"exit {done.returncode}"
        return (
            f"`bwrap` cannot create its namespaces here ({why}); allow unprivileged user "
            f"namespaces (sysctl kernel.unprivileged_userns_clone=1), or {TURN_OFF}"
        )
    return None
