"""A private mount namespace for one chaos run, and the process tools the suite needs.

Every orchestree command of a run executes inside one mount namespace (held open by a
small process, entered with `nsenter`), so faults are mounts that nobody outside the
run sees and that vanish with it: `/proc/stat` bind-mounted from a copy whose `btime`
the suite rewrites in place (a wall-clock step as psutil sees it), a small tmpfs on
`.orchestration/` (a full disk), a read-only bind mount of it. Supervisors and agents
are children of the orchestrator and stay in the namespace, so an orchestrator started
later to resume sees what they see. The suite reads files inside the namespace through
`/proc/<holder>/root`, which resolves paths with the namespace's mounts.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path


class Namespace:
    """A mount namespace held open by a process that waits for EOF on its stdin (so
    it also ends if the test process dies)."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", "echo ready; exec cat"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.holder.stdout is not None
        ready = self.holder.stdout.readline()
        if ready.strip() != b"ready":
            err = self.holder.stderr.read() if self.holder.stderr else b""
            raise RuntimeError(f"cannot make a mount namespace (root needed): {err!r}")
        self.pid = self.holder.pid

    def inside(self, path: Path) -> Path:
        """`path` as processes in the namespace see it, readable from outside."""
        return Path(f"/proc/{self.pid}/root{path}")

    def argv(self, argv: list[str], cwd: Path) -> list[str]:
        """`argv` run inside the namespace (nsenter execs it: same pid, no fork)."""
        return ["nsenter", "-t", str(self.pid), "-m", f"--wd={cwd}", "--", *argv]

    def mount(self, *args: str) -> None:
        subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "--", "mount", *args],
            check=True,
            capture_output=True,
        )

    def umount(self, target: Path) -> None:
        subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "--", "umount", "-l", str(target)],
            check=True,
            capture_output=True,
        )

    def close(self) -> None:
        """End the holder; the namespace and its mounts go with its last process."""
        if self.holder.stdin is not None:
            with contextlib.suppress(OSError):
                self.holder.stdin.close()
        try:
            self.holder.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait()
        for stream in (self.holder.stdout, self.holder.stderr):
            if stream is not None:
                stream.close()


BTIME = re.compile(rb"^btime (\d+)$", re.MULTILINE)


def copy_proc_stat(dest: Path) -> None:
    dest.write_bytes(Path("/proc/stat").read_bytes())


def step_btime(stat_copy: Path, seconds: int) -> tuple[int, int]:
    """Move `btime` in the copy by `seconds`, IN PLACE (a bind mount follows the inode,
    not the name): what psutil computes every process's start time from. Returns the
    old and new value."""
    with stat_copy.open("r+b") as fh:
        data = fh.read()
        found = BTIME.search(data)
        assert found is not None, "no btime line in the /proc/stat copy"
        old = int(found.group(1))
        new_data = data[: found.start(1)] + str(old + seconds).encode() + data[found.end(1) :]
        fh.seek(0)
        fh.write(new_data)
        fh.truncate()
    return old, old + seconds


def proc_state(pid: int) -> str | None:
    """The state letter of a process (R, S, Z, ...), None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()[0]


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def parent_of(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("ascii", "replace")
    except OSError:
        return None
    return int(raw[raw.rfind(")") + 2 :].split()[1])


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def marked_processes(marker: str) -> dict[int, list[str]]:
    """Live processes whose environment carries `marker` (`NAME=value`): pid -> argv."""
    needle = marker.encode()
    found: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(name)):
            found[int(name)] = cmdline(int(name))
    return found


def kill(pid: int) -> bool:
    """SIGKILL `pid`; False when it was already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def end_marked(marker: str, timeout: float = 5.0) -> dict[int, list[str]]:
    """Wait up to `timeout` for marked processes to end by themselves; SIGKILL the rest
    (so a failed run leaves nothing behind); return those that had to be killed."""
    deadline = time.monotonic() + timeout
    left = marked_processes(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = marked_processes(marker)
    for pid in left:
        kill(pid)
    return left
