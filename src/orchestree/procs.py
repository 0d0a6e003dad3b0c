"""The only module that starts, identifies or ends OS processes (DESIGN.md §2).

**Identity.** A process is `Identity(pid, ticks, boot_id)`: its pid, its start time in
clock ticks since boot (field 22 of `/proc/<pid>/stat`, fixed for the life of the
process) and the kernel's boot id (so a reboot that reuses the pid is told apart).
No wall clock takes part: psutil's `create_time()` adds `/proc/stat`'s `btime`, which is
whole seconds of (wall clock - uptime) and moves by a second whenever NTP slews across
a second boundary; comparing it made running lanes look like strangers and killed them.

**Gone.** `confirm_gone` declares a process gone only on two independent signs (its
pidfd or a second identity read after a short wait, and the caller's own sign such as
a missing result file): a wrong "gone" costs an agent's work, a late one a second.

**Ending a tree.** `end_tree` TERMs a process group, the live descendants of a root
and every process carrying a tree token in its environment (a `setsid` daemon leaves
the group and, once its parent died, the ancestry too; it keeps its environment), then
KILLs what is left after a grace.

Standard library only: the supervisor imports it and starts in ~50 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
SUPERVISOR = "orchestree.executors.supervisor"  # the module every lane's supervisor runs
TREE_ENV = "ORCHESTREE_TREE"  # the token every process of one agent's tree inherits
SCAN_S = 0.05
CONFIRM_S = 0.2  # the wait before a second identity read
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Identity:
    """One process, for as long as this boot lasts: pid + start ticks + boot id."""

    pid: int
    ticks: int
    boot_id: str

    def as_text(self) -> str:
        """`pid:ticks:boot_id`, the form kept in handles (a boot id holds no ':')."""
        return f"{self.pid}:{self.ticks}:{self.boot_id}"

    @classmethod
    def from_text(cls, text: str) -> Identity | None:
        parts = text.split(":")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or not parts[2]:
            return None
        return cls(int(parts[0]), int(parts[1]), parts[2])

    @classmethod
    def recorded(cls, pid: Any, ticks: Any, boot: Any) -> Identity | None:
        """The identity kept in a tracker or a file, or None when any part is missing."""
        ok = isinstance(pid, int) and isinstance(ticks, int) and isinstance(boot, str)
        return cls(pid, ticks, boot) if ok and pid > 0 and boot else None


@functools.cache
def boot_id() -> str:
    """This boot's id (read once; it changes only with a reboot)."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as fh:
            return fh.read().strip() or "unknown"
    except OSError:
        return "unknown"


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None.

    The command name may hold spaces and parentheses: parse after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _alive(fields: list[str]) -> bool:
    return fields[0] not in ("Z", "X")  # zombies and the dead do not count


def identity(pid: int) -> Identity | None:
    """The identity of live process `pid`; None when there is none (or a zombie)."""
    fields = stat_fields(pid) if pid > 0 else None
    if fields is None or len(fields) < 20 or not _alive(fields):
        return None
    return Identity(pid, int(fields[19]), boot_id())  # field 22 = index 19 after comm


def is_ours(ident: Identity | None) -> bool:
    """True while the very process `ident` names is alive (pids are reused)."""
    return ident is not None and ident.boot_id == boot_id() and identity(ident.pid) == ident


def alive(pid: int) -> bool:
    """Is there a live (non-zombie) process `pid`, whoever it is."""
    return identity(pid) is not None


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def supervisor_identity(pid: int) -> Identity | None:
    """The identity of `pid` if it runs orchestree's supervisor (or the fork server,
    whose forks keep its command line). For a supervisor recorded by the released
    version with a wall-clock start time, which a clock step falsifies, what the
    process runs is a sign that no clock can fool."""
    ident = identity(pid) if pid > 0 else None
    return ident if ident is not None and SUPERVISOR in cmdline(pid) else None


def parent_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields is not None and len(fields) > 1 else None


# --- pidfds --------------------------------------------------------------------------


def open_pidfd(ident: Identity) -> int | None:
    """A pidfd for the process `ident` names, or None (gone, or no pidfd here).

    The identity is read again after opening: if it still matches, the fd refers to
    that process and not to a later one that reused the pid."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None or ident.boot_id != boot_id():
        return None
    try:
        fd: int = opener(ident.pid)
    except OSError:
        return None
    if identity(ident.pid) != ident:
        os.close(fd)
        return None
    return fd


def pidfd_exited(fd: int, timeout: float = 0.0) -> bool:
    """The kernel's word: a pidfd turns readable when its process has exited."""
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
    except (OSError, ValueError):
        return True
    return bool(readable)


def confirm_gone(
    ident: Identity | None,
    pidfd: int | None = None,
    other_sign: Callable[[], bool] | None = None,
    wait_s: float = CONFIRM_S,
) -> bool:
    """True only when the process is gone on two independent signs.

    With a pidfd, the kernel's exit notification is one sign; without one, an identity
    read that fails. The second: `other_sign()` (e.g. "no result file appeared") and,
    without a pidfd, a second identity read after `wait_s`."""
    if pidfd is not None:
        if not pidfd_exited(pidfd):
            return False
    elif is_ours(ident):
        return False
    else:
        time.sleep(wait_s)  # a transient read failure (a full /proc, a race) passes
        if is_ours(ident):
            return False
    return other_sign() if other_sign is not None else True


# --- starting ------------------------------------------------------------------------


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, value, 0, 0, 0)


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process, not to PID 1."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _die_with(parent: int) -> Callable[[], None]:
    def arrange() -> None:  # runs in the child between fork and exec
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return arrange


def spawn(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    new_session: bool = True,
    die_with_parent: bool = False,
    text: bool = False,
) -> subprocess.Popen[Any]:
    """Start `argv` (never through a shell): the one place orchestree starts a process.

    `new_session` puts it in a session and process group of its own (so its tree can be
    ended as a group, and Ctrl-C in the terminal reaches only the orchestrator);
    `die_with_parent` has the kernel send it SIGTERM when this process dies."""
    extra: dict[str, Any] = {"errors": "replace"} if text else {}
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=new_session,
        # Only the supervisor asks for it, and it has one thread: safe between fork and exec.
        preexec_fn=_die_with(os.getpid()) if die_with_parent else None,  # noqa: PLW1509
        text=text,
        **extra,
    )


def run(
    argv: Sequence[str], *, timeout: float | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a short helper program (`cp`, a probe of `bwrap`) to its end, its output
    captured as text; a time-out ends it (TimeoutExpired)."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check)


def fork(child: Callable[[], int]) -> int:
    """Fork this process; the child runs `child()` and exits with what it returns (1 if
    it raises), never returning here. The parent gets the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child()
        finally:
            os._exit(code)
    return pid


# --- ending --------------------------------------------------------------------------


def _proc_table() -> dict[int, list[str]]:
    """pid -> its stat fields (state, ppid, pgrp, ...) for every process."""
    table: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        fields = stat_fields(name) if name.isdigit() else None
        if fields is not None and len(fields) >= 3:
            table[int(name)] = fields
    return table


def live_descendants(root: int) -> list[int]:
    """Descendants of `root` that are not zombies."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, fields in table.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found: list[int] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if _alive(table[pid]):
            found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid`."""
    return [pid for pid, f in _proc_table().items() if f[2] == str(pgid) and _alive(f)]


def carrying(token: str) -> list[int]:
    """Live processes whose environment holds `ORCHESTREE_TREE=<token>`."""
    needle = f"{TREE_ENV}={token}".encode()
    me = os.getpid()
    found: list[int] = []
    for pid, fields in _proc_table().items():
        if pid == me or not _alive(fields):
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return found


@dataclass(frozen=True)
class Tree:
    """What makes up one process tree: a group, a root's descendants, a token."""

    pgid: int | None = None
    root: int | None = None
    token: str | None = None

    def members(self) -> list[int]:
        found: set[int] = set()
        if self.pgid is not None:
            found.update(group_members(self.pgid))
        if self.root is not None:
            found.update(live_descendants(self.root))
        if self.token:
            found.update(carrying(self.token))
        found.discard(os.getpid())
        return sorted(found)


def _signal_all(tree: Tree, pids: Iterable[int], sig: int) -> None:
    if tree.pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(tree.pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def end_tree(tree: Tree, grace_s: float, reap: Callable[[], object] | None = None) -> None:
    """TERM every member of `tree`, then KILL whatever is left after `grace_s`.

    `reap` (the caller's own children's reaper) runs while waiting, so exited children
    do not linger as zombies."""
    _signal_all(tree, tree.members(), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if reap is not None:
            reap()
        if not tree.members():
            return
        time.sleep(SCAN_S)
    for _ in range(100):  # KILL until nothing is left (a fork bomb may take rounds)
        left = tree.members()
        if not left:
            break
        _signal_all(tree, left, signal.SIGKILL)
        time.sleep(SCAN_S / 5)
        if reap is not None:
            reap()


def signal_if_ours(
    ident: Identity | None, sig: int = signal.SIGTERM, pidfd: int | None = None
) -> bool:
    """Send `sig` to the process `ident` names (or `pidfd` refers to), only while it is
    that process; True when it was sent."""
    own = pidfd is None
    if pidfd is None and ident is not None:
        pidfd = open_pidfd(ident)
    if pidfd is not None:  # race-free: a pidfd never reaches a process that reused the pid
        try:
            signal.pidfd_send_signal(pidfd, sig)
            return True
        except (OSError, AttributeError):
            return False
        finally:
            if own:
                os.close(pidfd)
    if not is_ours(ident) or ident is None:
        return False
    try:
        os.kill(ident.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# --- an agent whose supervisor died ---------------------------------------------------


def agent_record(agent: Identity, token: str) -> dict[str, Any]:
    """What a supervisor writes about the agent it started (see `end_orphaned_agent`)."""
    me = identity(os.getpid())
    return {
        "pid": agent.pid,
        "start_ticks": agent.ticks,
        "boot_id": agent.boot_id,
        "token": token,
        "supervisor": me.as_text() if me else None,
    }


def end_orphaned_agent(agent_file: str | Path, grace_s: float) -> bool:
    """End the tree of an agent whose supervisor died before it could (SIGKILL, OOM).

    `agent_file` is what the supervisor recorded (`agent_record`). Nothing is signalled
    while that supervisor still lives (it ends its own tree); the group is signalled
    only while its leader is the recorded agent (pids are reused), and every process
    that carries the tree's token, a `setsid` child included. True when anything of
    the tree was found."""
    import json

    try:
        with open(agent_file, encoding="utf-8") as fh:
            info = json.load(fh)
        ticks, token = int(info["start_ticks"]), str(info.get("token") or "")
        leader = Identity(int(info["pid"]), ticks, str(info.get("boot_id") or boot_id()))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    keeper = Identity.from_text(str(info.get("supervisor") or ""))
    if keeper is not None and is_ours(keeper):
        return False  # its supervisor is alive: the tree is in its hands
    tree = Tree(pgid=leader.pid if is_ours(leader) else None, token=token or None)
    if not tree.members():
        return False
    end_tree(tree, grace_s)
    return True
