"""Where the monitors' data comes from: the tracker file, read without a lock, and
the process table. The only module of the monitor that touches either.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestree import procs
from orchestree.access_tracker import TrackerFileError, parse
from orchestree.monitor.snapshot import Memo, build_snapshot
from orchestree.monitor.views import Snapshot


@dataclass(frozen=True)
class Reading:
    """One look at the tracker: the last good data and, when the latest read failed,
    why (the views show the notice and keep the last good data on screen)."""

    tracker: dict[str, Any] | None
    notice: str | None
    changed: bool
    raw: bytes | None = None  # the file as read: valid JSON, so the web view sends it as is


class TrackerReader:
    """Reads the tracker on demand, re-parsing only when the file changed.

    `os.replace` gives every writer's file a new inode, so (inode, size, mtime) tells
    a new tracker from the one we hold without reading it; a 500-lane tracker is
    parsed once per change, not once per refresh or per request.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._data: dict[str, Any] | None = None
        self._raw: bytes | None = None
        self._notice: str | None = None

    def read(self) -> Reading:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._failed(
                f"{self.path} does not exist; run `orchestree init` in the repository"
            )
        except OSError as exc:
            return self._failed(f"cannot read {self.path}: {exc.strerror}")
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._key and self._notice is None:
            return Reading(self._data, None, changed=False, raw=self._raw)
        try:
            raw = self.path.read_bytes()
            data = parse(raw.decode("utf-8"), str(self.path))
        except TrackerFileError as exc:
            return self._failed(str(exc))
        except (OSError, UnicodeDecodeError) as exc:
            return self._failed(f"cannot read {self.path}: {exc}")
        self._key, self._data, self._raw, self._notice = key, data, raw, None
        return Reading(data, None, changed=True, raw=raw)

    def _failed(self, notice: str) -> Reading:
        if self._data is not None:
            notice = f"showing the last good read: {notice}"
        changed = notice != self._notice
        self._key, self._notice = None, notice
        return Reading(self._data, notice, changed=changed, raw=self._raw)


def snapshot_now(
    tracker: dict[str, Any], default_timeout_s: float, memo: Memo | None = None
) -> Snapshot:
    """The snapshot of `tracker` at this moment, on this machine."""
    return build_snapshot(
        tracker,
        now=datetime.now(UTC),
        process_identity=procs.identity,
        default_timeout_s=default_timeout_s,
        this_host=socket.gethostname(),
        memo=memo,
    )
