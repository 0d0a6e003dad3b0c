#!/usr/bin/env python3
"""Locked, atomic access to an orchestree tracker. Standard library only.

This file is both a module of orchestree (the low-level store that `tracker.py`
builds on) and the helper that every worktree gets a copy of, as in the seed:

    python3 access_tracker.py TRACKER              # print the tracker
    python3 access_tracker.py TRACKER '<json>'     # deep-merge an update under the lock

A write takes an exclusive `flock` on `tracker.lock` beside the tracker, reads,
merges, checks lane statuses against the state machine, writes a temp file in the
same folder, fsyncs it, keeps the previous file as `tracker.json.bak` (a hard link,
no copy), replaces the tracker with `os.replace`, fsyncs the folder and appends one
line to `events.jsonl`. Readers need no lock. The kernel drops a dead holder's flock,
so a leftover lock file never blocks anyone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

SUPPORTED_MAJOR = 1
LOCK_TIMEOUT_S = 30.0

# The lane state machine (DESIGN.md §3). `models.py` re-exports it; agents' copies of
# this file check it too, so an agent cannot put a lane into a state that does not exist.
LANE_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"running", "blocked", "cancelled"}),
    "running": frozenset({"completed", "failed", "cancelled", "pending"}),  # pending: retry
    "completed": frozenset({"merged", "conflict", "verify_failed"}),
    "failed": frozenset({"pending", "blocked"}),
    "cancelled": frozenset({"pending"}),
    "blocked": frozenset({"pending", "cancelled"}),
    "merged": frozenset(),
    "conflict": frozenset({"pending", "merged", "conflict", "verify_failed"}),
    "verify_failed": frozenset({"pending", "merged", "conflict", "verify_failed"}),
}
AGENT_STATUSES = frozenset({"created", "running", "completed", "failed"})


class TrackerFileError(Exception):
    """The tracker cannot be read, is torn, or is of a newer major version."""


class LockTimeoutError(TrackerFileError):
    def __init__(self, lock_path: str, holder: int | None, waited: float) -> None:
        who = f"process {holder}" if holder else "another process"
        super().__init__(
            f"{lock_path} is held by {who} (waited {waited:.0f} s); "
            "wait for it to finish or stop it"
        )
        self.holder = holder


class InvalidUpdateError(TrackerFileError):
    """An update that would put the tracker into a state the state machine forbids."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _holder_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(raw) if raw.isdigit() else None
    except OSError:
        return None


@contextlib.contextmanager
def locked(
    lock_path: str,
    timeout: float = LOCK_TIMEOUT_S,
    on_wait: Callable[[int | None], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path`; record our pid in it while we hold it.

    Waits with a short backoff (so a released lock is taken within a millisecond or
    two, not a poll period), calls `on_wait(holder_pid)` once after a second of waiting
    and raises LockTimeoutError naming the holder after `timeout` seconds.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start = time.monotonic()
        delay = 0.0005
        warned = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            waited = time.monotonic() - start
            if waited >= timeout:
                raise LockTimeoutError(lock_path, _holder_pid(fd), waited)
            if on_wait is not None and not warned and waited >= 1.0:
                warned = True
                on_wait(_holder_pid(fd))
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def parse(text: str, path: str) -> dict[str, Any]:
    """Parse tracker text; refuse torn files and newer major versions."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrackerFileError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
            f"the last good copy is {path}.bak"
        ) from None
    if not isinstance(data, dict):
        raise TrackerFileError(f"{path} does not hold a JSON object; see {path}.bak")
    version = str(data.get("version", ""))
    major = version.split(".", 1)[0]
    if not major.isdigit():
        raise TrackerFileError(f"{path} has no valid version; see {path}.bak")
    if int(major) > SUPPORTED_MAJOR:
        raise TrackerFileError(
            f"{path} is version {version}, newer than this orchestree understands "
            f"({SUPPORTED_MAJOR}.x); upgrade orchestree"
        )
    return data


def read(path: str) -> dict[str, Any]:
    """Read the tracker without a lock (os.replace makes every read whole)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise TrackerFileError(
            f"{path} does not exist; run `orchestree init` in the repository first"
        ) from None
    return parse(text, path)


def deep_merge(base: Any, update: Any) -> Any:
    """Dicts merge key by key; anything else replaces."""
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else value
        return merged
    return update


def check_statuses(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Every lane and agent status is known, and every lane status change is allowed."""
    old_lanes = old.get("lanes") or {}
    lanes = new.get("lanes")
    if not isinstance(lanes, dict):
        raise InvalidUpdateError("`lanes` must be an object")
    for lane_id, lane in lanes.items():
        if not isinstance(lane, dict):
            raise InvalidUpdateError(f"lane {lane_id!r} must be an object")
        status = lane.get("status", "pending")
        if status not in LANE_TRANSITIONS:
            raise InvalidUpdateError(
                f"lane {lane_id!r}: status {status!r} is not one of {', '.join(LANE_TRANSITIONS)}"
            )
        before = (old_lanes.get(lane_id) or {}).get("status")
        if before is not None and before != status and status not in LANE_TRANSITIONS[before]:
            allowed = ", ".join(sorted(LANE_TRANSITIONS[before])) or "nothing"
            raise InvalidUpdateError(
                f"lane {lane_id!r}: cannot go from {before!r} to {status!r} "
                f"(from {before!r} a lane may go to: {allowed})"
            )
    agents = new.get("agents")
    if not isinstance(agents, dict):
        raise InvalidUpdateError("`agents` must be an object")
    for name, agent in agents.items():
        status = agent.get("status") if isinstance(agent, dict) else None
        if status not in AGENT_STATUSES:
            raise InvalidUpdateError(
                f"agent {name!r}: status {status!r} is not one of "
                f"{', '.join(sorted(AGENT_STATUSES))}"
            )


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep_temps(folder: str, name: str) -> None:
    # Writers only create temp files while holding the lock, so under the lock any
    # temp file present was left by a writer that died mid-write.
    prefix = f".{name}."
    for entry in os.scandir(folder):
        if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def encode(data: dict[str, Any]) -> str:
    """The tracker as text: one top-level key a line, and one lane or agent a line.

    Readable with `cat`, `grep` and `jq`, and written by json's C encoder (an indented
    dump runs its pure-Python one, several times slower on a large tracker).
    """

    def one(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = []
    for key, value in data.items():
        if isinstance(value, dict) and value and key in ("lanes", "agents"):
            inner = ",\n".join(f"    {one(k)}: {one(v)}" for k, v in value.items())
            lines.append(f"  {one(key)}: {{\n{inner}\n  }}")
        else:
            lines.append(f"  {one(key)}: {one(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_atomic(path: str, data: dict[str, Any]) -> None:
    """Replace `path` by `data` so that readers see the old file or the new one, whole.

    The previous file stays as `<path>.bak` (a second name for the old inode).
    """
    folder, name = os.path.split(os.path.abspath(path))
    _sweep_temps(folder, name)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    payload = encode(data).encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.path.exists(path):
        bak_tmp = os.path.join(folder, f".{name}.bak.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bak_tmp)
        os.link(path, bak_tmp)
        os.replace(bak_tmp, f"{path}.bak")
    os.replace(tmp, path)
    _fsync_dir(folder)


def append_event(path: str, event: dict[str, Any]) -> None:
    """Append one JSON line to the audit trail beside the tracker."""
    line = json.dumps({"ts": now_iso(), "pid": os.getpid(), **event}, ensure_ascii=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8") + b"\n")
    finally:
        os.close(fd)


def paths(tracker: str) -> tuple[str, str]:
    """The lock file and events file that belong to `tracker`."""
    folder = os.path.dirname(os.path.abspath(tracker))
    return os.path.join(folder, "tracker.lock"), os.path.join(folder, "events.jsonl")


def transact(
    tracker: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    event: dict[str, Any],
    validate: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
    timeout: float = LOCK_TIMEOUT_S,
    on_wait: Callable[[int | None], None] | None = None,
) -> dict[str, Any]:
    """Read-modify-write under the lock; returns the tracker as written.

    `change` gets a copy of the current tracker and returns the new one; `validate`
    (old, new) may normalise it or raise. Nothing is written if either raises.
    """
    lock_path, events_path = paths(tracker)
    with locked(lock_path, timeout, on_wait):
        old = read(tracker)
        new = change(json.loads(json.dumps(old)))
        check_statuses(old, new)
        if validate is not None:
            new = validate(old, new)
        new["updated_at"] = now_iso()
        write_atomic(tracker, new)
        append_event(events_path, event)
        return new


def update(tracker: str, changes: dict[str, Any], actor: str = "agent") -> dict[str, Any]:
    """Deep-merge `changes` into the tracker under the lock (the seed's contract)."""
    if not isinstance(changes, dict):
        raise InvalidUpdateError("an update must be a JSON object")
    return transact(
        tracker,
        lambda data: deep_merge(data, changes),
        {"actor": actor, "event": "update", "update": changes},
    )


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    tracker = argv[1]
    try:
        if len(argv) == 2:
            json.dump(read(tracker), sys.stdout, indent=2, ensure_ascii=False)
            sys.stdout.write("\n")
            return 0
        try:
            changes = json.loads(argv[2])
        except json.JSONDecodeError as exc:
            print(f"access_tracker: the update is not valid JSON: {exc.msg}", file=sys.stderr)
            return 2
        update(tracker, changes, actor=os.environ.get("ORCHESTREE_AGENT", "agent"))
        return 0
    except InvalidUpdateError as exc:
        print(f"access_tracker: {exc}; nothing was written", file=sys.stderr)
        return 2
    except TrackerFileError as exc:
        print(f"access_tracker: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
