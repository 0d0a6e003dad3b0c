#!/usr/bin/env python3
"""Locked, atomic access to an orchestree tracker. Standard library only, and runs on
any python3 from 3.7 on (agents call it with the python3 they have, not orchestree's).

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
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
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
    # timezone.utc, not datetime.UTC: agents run this file with whatever python3 they
    # have, and UTC is new in 3.11.
    utc = timezone.utc  # noqa: UP017
    return datetime.now(utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _holder_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(raw) if raw.isdigit() else None
    except OSError:
        return None


def _wait_for_flock(fd: int, timeout: float, on_wait: Callable[[], None] | None) -> bool:
    """Block in flock() on a duplicate of `fd` in a helper thread, up to `timeout`.

    A blocked flock() is woken by the kernel the moment the holder lets go, so
    waiters take turns instead of polling (polling let a writer in a loop starve the
    others: a p99 of seconds with 16 writers). The thread lets the wait time out: if
    we give up, it still owns its duplicate and releases the lock as soon as it gets it.
    """
    dup = os.dup(fd)
    guard = threading.Lock()
    state = {"got": False, "abandoned": False}

    def take() -> None:
        try:
            fcntl.flock(dup, fcntl.LOCK_EX)
            with guard:
                if state["abandoned"]:
                    fcntl.flock(dup, fcntl.LOCK_UN)
                else:
                    state["got"] = True
        finally:
            os.close(dup)  # a lock we got stays with `fd`, which shares the open file

    waiter = threading.Thread(target=take, name="tracker-lock-wait", daemon=True)
    waiter.start()
    waiter.join(min(timeout, 1.0) if on_wait is not None else timeout)
    if waiter.is_alive() and on_wait is not None and timeout > 1.0:
        on_wait()
        waiter.join(timeout - 1.0)
    with guard:
        state["abandoned"] = not state["got"]
        return state["got"]


def _flock_now(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return False
    return True


@contextlib.contextmanager
def locked(
    lock_path: str,
    timeout: float = LOCK_TIMEOUT_S,
    on_wait: Callable[[int | None], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path`; record our pid in it while we hold it.

    When the lock is taken, waits in a blocking flock (see `_wait_for_flock`), calls
    `on_wait(holder_pid)` once after a second of waiting and raises LockTimeoutError
    naming the holder after `timeout` seconds.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _flock_now(fd):
            start = time.monotonic()
            say = (lambda: on_wait(_holder_pid(fd))) if on_wait is not None else None
            if not _wait_for_flock(fd, timeout, say):
                raise LockTimeoutError(lock_path, _holder_pid(fd), time.monotonic() - start)
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


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise TrackerFileError(
            f"{path} does not exist; run `orchestree init` in the repository first"
        ) from None


def read(path: str) -> dict[str, Any]:
    """Read the tracker without a lock (os.replace makes every read whole)."""
    return parse(read_text(path), path)


def deep_merge(base: Any, update: Any) -> Any:
    """Dicts merge key by key; anything else replaces."""
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else value
        return merged
    return update


def check_version(old: dict[str, Any], new: dict[str, Any]) -> None:
    """An update never changes `version`: a newer one would lock every command out."""
    if new.get("version") != old.get("version"):
        raise InvalidUpdateError(
            f"an update may not change `version` (from {old.get('version')!r} "
            f"to {new.get('version')!r})"
        )


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


def write_atomic(path: str, data: dict[str, Any] | bytes) -> None:
    """Replace `path` by `data` (or its JSON) so that readers see the old file or the
    new one, whole. The previous file stays as `<path>.bak` (a second name for the old
    inode)."""
    folder, name = os.path.split(os.path.abspath(path))
    _sweep_temps(folder, name)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    # Compact: json's C encoder does not indent, and the pure-Python one that does
    # took most of an update's time. `status --json` and this helper print it indented.
    payload = (
        data
        if isinstance(data, bytes)
        else json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        rest = memoryview(payload)
        while rest:  # write() may write less than asked (a full disk): never replace short
            rest = rest[os.write(fd, rest) :]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        os.unlink(tmp)  # a full disk: give back what the half-written copy took
        raise
    else:
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
    validate: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | bytes] | None = None,
    timeout: float = LOCK_TIMEOUT_S,
    on_wait: Callable[[int | None], None] | None = None,
) -> dict[str, Any]:
    """Read-modify-write under the lock; returns the new tracker.

    `change` gets a copy of the current tracker and returns the new one; `validate`
    (old, new) may raise, and returns what to write: the tracker, normalised, or
    already serialised as JSON bytes (what `tracker.py` does: pydantic serialises
    faster than json.dumps of a dump). Nothing is written if either raises.
    """
    lock_path, events_path = paths(tracker)
    with locked(lock_path, timeout, on_wait):
        text = read_text(tracker)
        old = parse(text, tracker)
        new = change(json.loads(text))  # a second parse is the cheapest deep copy
        check_version(old, new)
        check_statuses(old, new)
        new["updated_at"] = now_iso()
        checked = new if validate is None else validate(old, new)
        write_atomic(tracker, checked)
        append_event(events_path, event)
        return new if isinstance(checked, bytes) else checked


def update(tracker: str, changes: dict[str, Any], actor: str = "agent") -> dict[str, Any]:
    """Deep-merge `changes` into the tracker under the lock (the seed's contract)."""
    if not isinstance(changes, dict):
        raise InvalidUpdateError("an update must be a JSON object")
    return transact(
        tracker,
        lambda data: deep_merge(data, changes),
        {"actor": actor, "event": "update", "update": changes},
    )


USAGE = """usage:
    python3 access_tracker.py TRACKER              # print the tracker
    python3 access_tracker.py TRACKER '<json>'     # deep-merge an update under the lock"""


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
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
