"""A wall clock that steps, for real processes: `/proc/stat` seen through a copy.

Linux derives a process's wall-clock start time from `/proc/stat`'s `btime` (whole
seconds of wall clock minus uptime), which moves whenever NTP slews or steps the
clock across a second. Inside a private mount namespace (`unshare -m`, as root) the
copy is bind-mounted over `/proc/stat`; rewriting `btime` in the copy in place is a
clock step for every process started in that namespace, and only for them.
"""

from __future__ import annotations

import re
from pathlib import Path

_BTIME = re.compile(rb"^btime (\d+)$", re.MULTILINE)


def stat_copy(folder: Path) -> Path:
    """A copy of this machine's /proc/stat, to bind-mount over it."""
    copy = folder / "proc-stat"
    copy.write_bytes(Path("/proc/stat").read_bytes())
    return copy


def btime(copy: Path) -> int:
    found = _BTIME.search(copy.read_bytes())
    assert found, f"no btime line in {copy}"
    return int(found.group(1))


def step_btime(copy: Path, seconds: int) -> None:
    """Move `btime` in the copy by `seconds`, in place (the same inode stays mounted)."""
    text = copy.read_bytes()
    stepped = _BTIME.sub(lambda m: b"btime %d" % (int(m.group(1)) + seconds), text, count=1)
    with copy.open("r+b") as fh:
        fh.write(stepped)
        fh.truncate()


def in_namespace(copy: Path, argv: list[str]) -> list[str]:
    """`argv` run in a private mount namespace where /proc/stat is `copy`; `exec`
    keeps one pid from `unshare` to `argv`, so signalling it reaches `argv`."""
    script = 'mount --bind "$0" /proc/stat && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(copy), *argv]
