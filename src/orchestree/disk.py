"""A full or read-only disk, said in one line: which disk, which file, what to do.

A write that fails for want of space (or because the file system is read-only) is not
orchestree's bug and not the user's input: the run stops, exit 3, with the device and
mount point that refused and the file being written. The tracker is written to a temp
file first, so it (or its `.bak`) is intact and `execute` resumes once there is space.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from orchestree.errors import EnvironmentRefused

_PROBLEMS = {
    errno.ENOSPC: ("no space left", "free some space there"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space there"),
    errno.EROFS: ("the file system is read-only", "make it writable"),
}


class DiskError(EnvironmentRefused):
    """A write failed for want of space or on a read-only file system (exit 3)."""


def is_disk_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _PROBLEMS


def mount_of(path: str | Path) -> tuple[str, str]:
    """(mount point, device) of the file system holding `path`, from /proc/self/mountinfo."""
    target = os.path.realpath(path)
    best = ("/", "?")
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if " - " not in line or len(fields) < 5:
                continue
            point = fields[4].replace("\\040", " ")
            source = line.split(" - ", 1)[1].split()
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):  # the last, longest mount wins
                best = (point, source[1] if len(source) > 1 else source[0])
    return best


def describe(exc: OSError, path: str | Path | None = None) -> str:
    """One line: what failed, on which device and mount point, writing which file."""
    problem, todo = _PROBLEMS.get(exc.errno or 0, (exc.strerror or str(exc), "fix it"))
    target = str(path or exc.filename or "")
    if not target:
        return f"{problem} on the disk; {todo}, then run the command again"
    point, device = mount_of(target)
    return (
        f"{problem} on {device} (mounted at {point}) while writing {target}; "
        f"{todo}, then run the command again (the tracker is intact)"
    )


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a full or read-only disk under `path` into one `DiskError` naming it."""
    try:
        yield
    except OSError as exc:
        if is_disk_error(exc):
            raise DiskError(describe(exc, exc.filename or path)) from None
        raise
