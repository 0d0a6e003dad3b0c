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
no copy) when that file is one orchestree validated, replaces the tracker with
`os.replace`, fsyncs the folder and appends one line to `events.jsonl`. The files it
replaced (the old `.bak`; orchestree's old ledger) are freed by a thread of the writer
after the renames (`_replace_free_later`). Readers need no lock. The kernel drops a
dead holder's flock, so a leftover lock file never blocks anyone.

The trust boundary (docs/trust.md): an agent may change only its own lane's
`progress`, `data` and `results`, within the caps below. Run as the helper, this file
refuses anything else with one line and exit 2, nothing written; it is bound to the
lane named by `ORCHESTREE_LANE`, or by the worktree (`agent-<lane>`) its copy sits in.
Whatever an agent writes into tracker.json directly, orchestree acts only on its
ledger (`ledger.json`, authenticated with an HMAC whose key is `ledger.key`, 0600):
the ledger holds the tracker exactly as orchestree last wrote it, and from
tracker.json only the lanes' agent fields are taken, each checked as the helper would.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import hmac
import itertools
import json
import math
import os
import queue
import re
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
    # pending: sent back to its agent with review comments (`orchestree rework <lane>`)
    "completed": frozenset({"merged", "conflict", "verify_failed", "pending"}),
    "failed": frozenset({"pending", "blocked"}),
    "cancelled": frozenset({"pending"}),
    "blocked": frozenset({"pending", "cancelled"}),
    "merged": frozenset(),
    "conflict": frozenset({"pending", "merged", "conflict", "verify_failed"}),
    "verify_failed": frozenset({"pending", "merged", "conflict", "verify_failed"}),
}
# The state machine's groups, defined once (every module asks here, none spells a set):
SUCCEEDED = frozenset({"completed", "merged"})  # its dependants may start
# Ended without success: a person (or `retry`) must act, and its dependants are blocked.
UNSUCCESSFUL = frozenset({"failed", "cancelled", "blocked", "conflict", "verify_failed"})
ENDED = SUCCEEDED | UNSUCCESSFUL  # neither pending nor running
MERGEABLE = frozenset({"completed", "conflict", "verify_failed"})  # merge takes it (again)
MERGE_DECIDED = frozenset({"merged", "conflict", "verify_failed"})  # merge has ruled on it
AGENT_STATUSES = frozenset({"created", "running", "completed", "failed"})
# The tracker's `phase`, by number (DESIGN.md §3).
PHASES = ("initialised", "probes", "plan", "execute", "merge")

# What an agent may write, and how much (docs/trust.md). Everything else is orchestree's.
AGENT_FIELDS = ("progress", "data", "results")
PROGRESS_MAX_CHARS = 1024
DATA_MAX_BYTES = 64 * 1024
RESULTS_MAX = 200
RESULT_PATH_MAX_BYTES = 1024
# The lane id grammar (DESIGN.md §3), matched in full: no trailing newline slips through.
LANE_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
LEDGER_NAME = "ledger.json"
KEY_NAME = "ledger.key"
# The ledger's folder: a folder, never a file, is what a sandbox binds read-only, as a
# file replaced by a rename while bwrap binds it fails the bind (sandbox.py).
LEDGER_DIR = "ledger"


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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def loads_strict(text: str) -> Any:
    """JSON as the standard says: NaN, Infinity and numbers that overflow (1e400) are
    refused with ValueError, so nothing downstream sends invalid JSON."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


def parse(text: str, path: str) -> dict[str, Any]:
    """Parse tracker text; refuse torn files, non-standard JSON and newer major versions."""
    try:
        data = loads_strict(text)
    except json.JSONDecodeError as exc:
        raise TrackerFileError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
            f"the last good copy is {path}.bak"
        ) from None
    except ValueError as exc:
        raise TrackerFileError(
            f"{path} is not valid JSON ({exc}); the last good copy is {path}.bak"
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
    """Read the tracker file as it is, without a lock (os.replace makes every read
    whole). What orchestree acts on is `read_trusted`."""
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
    # temp file present was left by a writer that died mid-write, or is a replaced
    # file a writer's thread has yet to free (`_replace_free_later`): either is no
    # one's any more. One that cannot go (a sandbox bound it read-only) stays.
    prefix = f".{name}."
    for entry in os.scandir(folder):
        if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def write_atomic(
    path: str, data: dict[str, Any] | bytes, backup: bool | bytes = True, sync_dir: bool = True
) -> None:
    """Replace `path` by `data` (or its JSON) so that readers see the old file or the
    new one, whole. `backup`: True keeps the previous file as `<path>.bak` (a second
    name for the old inode), bytes write those as `<path>.bak` instead (the last valid
    tracker, when the file on disk is not one), False leaves `<path>.bak` alone.
    `sync_dir=False` leaves the folder's fsync to the caller's next write there (the
    ledger's), which makes both renames durable at once."""
    folder, name = os.path.split(os.path.abspath(path))
    _sweep_temps(folder, name)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    # Compact: json's C encoder does not indent, and the pure-Python one that does
    # took most of an update's time. `status --json` and this helper print it indented.
    payload = data if isinstance(data, bytes) else dumps(data)
    _write_file(tmp, payload, 0o644)
    if isinstance(backup, bytes):
        bak_tmp = os.path.join(folder, f".{name}.bak.{os.getpid()}.tmp")
        _write_file(bak_tmp, backup, 0o644)
        _replace_free_later(bak_tmp, f"{path}.bak")
    elif backup and os.path.exists(path):
        bak_tmp = os.path.join(folder, f".{name}.bak.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bak_tmp)
        os.link(path, bak_tmp, follow_symlinks=False)  # a link planted there: itself
        _replace_free_later(bak_tmp, f"{path}.bak")
    if backup:  # the old file lives on as the .bak: nothing to free
        os.replace(tmp, path)
    else:
        _replace_free_later(tmp, path)
    if sync_dir:
        _fsync_dir(folder)


def _replace_free_later(src: str, dst: str) -> None:
    """`os.replace(src, dst)`, the file `dst` named until now freed by `_reaper`'s thread:
    freeing a 0.5 MB file's blocks and cached pages (a 500-lane tracker) takes the
    kernel 0.4 ms, a small one's 0.1 ms, which a writer holding the lock need not wait
    for. Until then it keeps a temp name, which `_sweep_temps` removes if this process
    ends first. Readers still see the old file or the new one, whole."""
    folder, name = os.path.split(dst)
    dead = os.path.join(folder, f".{name}.{os.getpid()}.{next(_DEAD_SERIAL)}.old.tmp")
    try:
        os.link(dst, dead, follow_symlinks=False)  # never what a planted symlink names
    except OSError:  # nothing there yet, or no second name to be had (a full disk)
        os.replace(src, dst)
        return
    os.replace(src, dst)
    _reaper.put(dead)


_DEAD_SERIAL = itertools.count()


class _Reaper:
    """Unlinks files in a daemon thread of this process, and what is left of them when
    the process exits (one thread per process: a fork's child starts its own)."""

    def __init__(self) -> None:
        self._pid = 0
        self._paths: queue.SimpleQueue[str | None] | None = None

    def put(self, path: str) -> None:
        if self._paths is None or self._pid != os.getpid():
            self._paths, self._pid = queue.SimpleQueue(), os.getpid()
            thread = threading.Thread(target=self._unlink_each, args=(self._paths,),
                                      name="orchestree-reaper", daemon=True)  # fmt: skip
            thread.start()
            atexit.register(self._drain, self._pid, self._paths, thread)
        self._paths.put(path)

    @staticmethod
    def _unlink_each(paths: queue.SimpleQueue[str | None]) -> None:
        path = paths.get()
        while path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
            path = paths.get()

    @staticmethod
    def _drain(pid: int, paths: queue.SimpleQueue[str | None], thread: threading.Thread) -> None:
        if os.getpid() == pid:  # not a fork's child, where the parent's thread never ran
            paths.put(None)
            thread.join(timeout=10)


_reaper = _Reaper()


def dumps(data: Any) -> bytes:
    """The tracker's bytes on disk; NaN and Infinity are refused (ValueError)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def _write_file(path: str, payload: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        rest = memoryview(payload)
        while rest:  # write() may write less than asked (a full disk): never replace short
            rest = rest[os.write(fd, rest) :]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        os.unlink(path)  # a full disk: give back what the half-written copy took
        raise
    else:
        os.close(fd)


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
    on_ignored: Callable[[list[str]], None] | None = None,
) -> dict[str, Any]:
    """orchestree's read-modify-write under the lock; returns the new tracker.

    `change` gets a copy of the trusted tracker (`trusted_view`) and returns the new
    one; `validate` (old, new) may raise, and returns what to write: the tracker,
    normalised, or already serialised as JSON bytes (what `tracker.py` does: pydantic
    serialises faster than json.dumps of a dump). Nothing is written if either raises.
    `on_ignored` hears what of tracker.json was left out (`View.ignored`), if anything.
    The tracker and then the ledger are written: a crash between the two leaves the
    ledger's older record, which is what orchestree then acts on.
    """
    lock_path, events_path = paths(tracker)
    with locked(lock_path, timeout, on_wait):
        view = trusted_view(tracker)
        new = change(loads_strict(view.text))  # a second parse is the cheapest deep copy
        check_version(view.data, new)
        check_statuses(view.data, new)
        new["updated_at"] = now_iso()
        checked = new if validate is None else validate(view.data, new)
        payload = checked if isinstance(checked, bytes) else dumps(checked)
        backup = True if view.as_written else view.text.encode()
        write_signed(tracker, payload, backup=backup)
        if view.ignored and on_ignored is not None:
            on_ignored(view.ignored)
        if view.ignored:
            append_event(events_path, {"actor": "orchestree", "event": "edit-ignored",
                                       "ignored": view.ignored})  # fmt: skip
        append_event(events_path, event)
        return new if isinstance(checked, bytes) else checked


def write_owned(tracker: str, data: dict[str, Any] | bytes) -> None:
    """Write a whole new tracker and its ledger (init, reset); the caller holds the lock."""
    write_signed(tracker, data if isinstance(data, bytes) else dumps(data))


def update(
    tracker: str, changes: Any, actor: str = "agent", lane: str | None = None
) -> dict[str, Any]:
    """An agent's update (the seed's contract): deep-merged under the lock when it
    changes only the agent fields (`AGENT_FIELDS`) of existing lanes, of `lane` alone
    when given, within the caps; else InvalidUpdateError and nothing is written.

    Only tracker.json is written: orchestree takes these fields from it, checked again.
    """
    lock_path, events_path = paths(tracker)
    with locked(lock_path):
        text, as_written = _agent_base(tracker)
        old = parse(text, tracker)
        check_agent_update(changes, old, lane)
        new: dict[str, Any] = deep_merge(old, changes)
        for lane_id in changes["lanes"]:
            fields = new["lanes"][lane_id]
            for name in AGENT_FIELDS:
                problem = agent_field_problem(name, fields.get(name)) if name in fields else None
                if problem:
                    raise InvalidUpdateError(f"lane {lane_id!r}: {problem}")
        new["updated_at"] = now_iso()
        # The .bak is only ever a tracker orchestree validated: the file as its ledger
        # records it, never one an agent wrote.
        write_atomic(tracker, dumps(new), backup=as_written)
        record = {"actor": actor, "event": "update", "update": changes}
        if lane is not None:
            record["lane"] = lane
        append_event(events_path, record)
        return new


def _agent_base(tracker: str) -> tuple[str, bool]:
    """The tracker an agent's update applies to, and whether it is the file exactly as
    orchestree wrote it. A file that does not parse (written directly) gives way to the
    ledger's record; the helper cannot check the ledger's HMAC (the key may be hidden
    from it), and need not: orchestree checks every field it takes from tracker.json."""
    raw = _read_bytes(tracker)
    ledger = _ledger_payload_unchecked(tracker)
    if raw is None:
        read_text(tracker)  # raises: the tracker does not exist
    as_written = ledger is not None and raw == ledger
    text = (raw or b"").decode("utf-8", "replace")
    if ledger is not None and not as_written:
        try:
            parse(text, tracker)
        except TrackerFileError:
            return ledger.decode("utf-8", "replace"), False
    return text, as_written


# --- The trust boundary: what an agent may write (docs/trust.md) ---------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _result_path_problem(path: Any) -> str | None:
    if not isinstance(path, str) or not path:
        return f"each of `results` must be a non-empty path, not {_kind(path)}"
    if len(path.encode("utf-8")) > RESULT_PATH_MAX_BYTES:
        return f"a path in `results` is longer than {RESULT_PATH_MAX_BYTES} bytes"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return f"result path {path!r} holds a control character"
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return f"result path {path!r} is absolute; give it relative to the repository root"
    if ".." in re.split(r"[/\\]", path):
        return f"result path {path!r} leaves the repository ('..')"
    return None


def agent_field_problem(name: str, value: Any) -> str | None:
    """Why `value` may not be a lane's agent field `name`, or None when it may."""
    if name == "progress":
        if value is not None and not isinstance(value, str):
            return f"`progress` must be text or null, not {_kind(value)}"
        if value is not None and len(value) > PROGRESS_MAX_CHARS:
            return f"`progress` is {len(value)} characters long (at most {PROGRESS_MAX_CHARS})"
        return None
    if name == "data":
        if not isinstance(value, dict):
            return f"`data` must be a JSON object, not {_kind(value)}"
        try:
            size = len(dumps(value))
        except ValueError:
            return "`data` holds NaN or Infinity, which JSON does not allow"
        if size > DATA_MAX_BYTES:
            return f"`data` is {size} bytes as JSON (at most {DATA_MAX_BYTES})"
        return None
    if name == "results":
        if not isinstance(value, list):
            return f"`results` must be a list of paths, not {_kind(value)}"
        if len(value) > RESULTS_MAX:
            return f"`results` lists {len(value)} paths (at most {RESULTS_MAX})"
        for path in value:
            problem = _result_path_problem(path)
            if problem:
                return problem
        return None
    return f"`{name}` is orchestree's; an agent may change only {_AGENT_FIELDS_TEXT}"


_AGENT_FIELDS_TEXT = "its lane's progress, data and results"


def near_matches(name: str, known: Any) -> str:
    """` (did you mean 'a' or 'b'?)` for names close to `name`, or nothing."""
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def check_agent_update(changes: Any, tracker: dict[str, Any], lane: str | None) -> None:
    """Refuse an update that reaches outside the agent fields of existing lanes, or,
    when the caller speaks for `lane`, outside that lane's."""
    if not isinstance(changes, dict):
        raise InvalidUpdateError("an update must be a JSON object")
    mine = lane or "LANE"
    example = json.dumps({"lanes": {mine: {"progress": "50% complete"}}})
    for key in changes:
        if key != "lanes":
            raise InvalidUpdateError(
                f"`{key}` is orchestree's; an agent may change only {_AGENT_FIELDS_TEXT}, "
                f"e.g. {example}"
            )
    lanes = changes.get("lanes")
    if not isinstance(lanes, dict) or not lanes:
        raise InvalidUpdateError(f"`lanes` must be a non-empty object, e.g. {example}")
    known = tracker.get("lanes") or {}
    for lane_id, fields in lanes.items():
        if lane is not None and lane_id != lane:
            raise InvalidUpdateError(
                f"lane {lane_id!r} is not yours: this call speaks for lane {lane!r}, "
                f"which may change only {_AGENT_FIELDS_TEXT}"
            )
        if lane_id not in known:
            raise InvalidUpdateError(
                f"there is no lane {lane_id!r}{near_matches(lane_id, known)}; lanes are "
                "created only by `orchestree add-lane` and `orchestree plan`"
            )
        if not isinstance(fields, dict):
            raise InvalidUpdateError(f"lane {lane_id!r} must be an object, e.g. {example}")
        for name in fields:
            if name not in AGENT_FIELDS:
                raise InvalidUpdateError(
                    f"lane {lane_id!r}: `{name}` is orchestree's; an agent may change only "
                    f"{_AGENT_FIELDS_TEXT}"
                )


def bound_lane(helper_file: str | None = None) -> str | None:
    """The lane a call speaks for: the lane whose worktree (`agent-<lane>`) holds this
    copy of the helper, else `ORCHESTREE_LANE`; None for a call that is no lane's."""
    here = os.path.dirname(os.path.abspath(helper_file or __file__))
    folder = os.path.basename(here)
    placed = None
    if folder.startswith("agent-") and os.path.isfile(os.path.join(here, ".git")):
        placed = folder[len("agent-") :]
    named = bound_lane_name(os.environ.get("ORCHESTREE_LANE"))
    if placed is not None and named is not None and placed != named:
        raise InvalidUpdateError(
            f"this copy sits in lane {placed!r}'s worktree but ORCHESTREE_LANE is {named!r}; "
            "a lane may change only its own fields"
        )
    return placed or named


def bound_lane_name(named: str | None) -> str | None:
    """`ORCHESTREE_LANE` as a lane id (None when unset); refused unless a lane id in full."""
    if not named:
        return None
    if not LANE_ID_RE.fullmatch(named):
        raise InvalidUpdateError(f"ORCHESTREE_LANE is {named!r}, which is not a lane id")
    return named


# --- The ledger: orchestree's own record of the tracker (docs/trust.md) --------------


def ledger_paths(tracker: str) -> tuple[str, str]:
    """The ledger and its HMAC key, in the `ledger/` folder beside `tracker`."""
    beside = os.path.dirname(os.path.abspath(tracker))
    folder = os.path.join(beside, LEDGER_DIR)
    if any(os.path.exists(os.path.join(beside, name)) for name in (KEY_NAME, LEDGER_NAME)):
        _move_beside_ledger(beside, folder)
    return os.path.join(folder, LEDGER_NAME), os.path.join(folder, KEY_NAME)


def _move_beside_ledger(beside: str, folder: str) -> None:
    """A ledger written beside the tracker (before the `ledger/` folder) moves into it:
    the key first; a kill between the two leaves the ledger, which the next call moves."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    for name in (KEY_NAME, LEDGER_NAME):
        with contextlib.suppress(FileNotFoundError):  # another process moved it already
            os.rename(os.path.join(beside, name), os.path.join(folder, name))


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _ledger_key(path: str, create: bool) -> bytes | None:
    key = _read_bytes(path)
    if key is None and create:
        # Under the tracker lock, so no two writers race to create it.
        import secrets  # only here: a read need not load `random`

        _write_file(path, secrets.token_hex(32).encode("ascii"), 0o600)
        key = _read_bytes(path)
    return key or None


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).hexdigest().encode("ascii")


def write_signed(tracker: str, payload: bytes, backup: bool | bytes = True) -> bytes:
    """Replace `tracker` by `payload` (`write_atomic`, its backup as there) and record it
    in the ledger; the caller holds the lock. Both renames are durable on return, the
    tracker's first: a crash between them leaves the ledger's older record, which is what
    orchestree then acts on. Returns the ledger's bytes as written (a caller that keeps
    them need not read them back)."""
    write_atomic(tracker, payload, backup=backup, sync_dir=False)  # the ledger's syncs
    ledger, key_path = ledger_paths(tracker)
    with contextlib.suppress(FileExistsError):
        os.mkdir(os.path.dirname(ledger), 0o700)
    key = _ledger_key(key_path, create=True)
    if key is None:
        raise TrackerFileError(f"{key_path} is empty; remove it and {ledger} to start over")
    _sweep_temps(os.path.dirname(ledger), LEDGER_NAME)  # a writer killed mid-write left it
    tmp = os.path.join(os.path.dirname(ledger), f".{LEDGER_NAME}.{os.getpid()}.tmp")
    written = _mac(key, payload) + b"\n" + payload
    _write_file(tmp, written, 0o600)
    # The tracker's own rename, which `write_atomic(sync_dir=False)` leaves to this
    # write, is made durable before the ledger's: a power cut between the two must not
    # leave a new ledger beside the old tracker.json (its agent fields taken as edits).
    _fsync_dir(os.path.dirname(os.path.abspath(tracker)))
    _replace_free_later(tmp, ledger)
    _fsync_dir(os.path.dirname(ledger))
    return written


def _ledger_payload_unchecked(tracker: str) -> bytes | None:
    raw = _read_bytes(ledger_paths(tracker)[0])
    return None if raw is None else raw.partition(b"\n")[2]


def read_ledger(tracker: str) -> bytes | None:
    """The tracker as orchestree last wrote it, its HMAC checked; None for a tracker
    from before ledgers (no ledger and no key yet: the next write starts one)."""
    ledger, key_path = ledger_paths(tracker)
    raw = _read_bytes(ledger)
    if raw is None:
        if os.path.exists(key_path):
            raise TrackerFileError(
                f"{ledger} is missing (its key {key_path} is there); restore it, or "
                f"remove {key_path} to trust {tracker} as it is"
            )
        return None
    key = _ledger_key(key_path, create=False)
    mac, _, payload = raw.partition(b"\n")
    if key is None or not hmac.compare_digest(mac, _mac(key, payload)):
        raise TrackerFileError(
            f"{ledger} does not match its key {key_path}: it was changed outside "
            f"orchestree; restore both, or remove both to trust {tracker} as it is"
        )
    return payload


class View:
    """The tracker orchestree acts on (see `trusted_view`)."""

    def __init__(
        self,
        data: dict[str, Any],
        text: str,
        as_written: bool,
        ignored: list[str],
        signed: bool = True,
    ):
        self.data = data
        self.text = text  # `data` as JSON text
        self.as_written = as_written  # tracker.json is exactly what orchestree wrote
        self.ignored = ignored  # what in tracker.json orchestree did not take, and why
        # From the ledger: orchestree validated it when it wrote it. False for a tracker
        # from before ledgers, which only tracker.json holds.
        self.signed = signed


def read_trusted(path: str) -> dict[str, Any]:
    """The tracker orchestree acts on (`trusted_view`), as JSON data."""
    return trusted_view(path).data


def trusted_view(path: str) -> View:
    """The ledger's record, with each lane's agent fields taken from tracker.json where
    they pass the helper's checks. Anything else in tracker.json that differs (a lane
    added, a status, a pid) is ignored and named in `View.ignored`. Without a ledger
    (a tracker from before them), tracker.json itself."""
    payload = read_ledger(path)
    raw = _read_bytes(path)
    if payload is None:
        text = read_text(path)
        return View(parse(text, path), text, True, [], signed=False)
    text = payload.decode("utf-8")
    trusted = parse(text, path)
    if raw == payload:
        return View(trusted, text, True, [])
    try:
        current = parse(raw.decode("utf-8"), path) if raw is not None else None
    except (TrackerFileError, UnicodeDecodeError):
        current = None
    if current is None:
        why = "missing" if raw is None else "not valid JSON"
        return View(trusted, text, False, [f"{os.path.basename(path)} ({why})"])
    ignored = _take_agent_fields(trusted, current)
    return View(trusted, json.dumps(trusted, ensure_ascii=False), False, ignored)


_NOT_COMPARED = frozenset({"lanes", "agents", "updated_at"})


def _take_agent_fields(trusted: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Copy valid agent fields from `current` into `trusted`; name what was left."""
    ignored: list[str] = []
    for key in sorted(set(trusted) | set(current)):
        if key not in _NOT_COMPARED and trusted.get(key) != current.get(key):
            ignored.append(f"`{key}` changed")
    for group in ("lanes", "agents"):
        ours, theirs = trusted.get(group) or {}, current.get(group)
        if not isinstance(theirs, dict):
            ignored.append(f"`{group}` replaced")
            continue
        for name in sorted(set(theirs) - set(ours)):
            ignored.append(f"{group}.{name} added")
        for name in sorted(set(ours) - set(theirs)):
            ignored.append(f"{group}.{name} removed")
        for name in sorted(set(ours) & set(theirs)):
            mine, other = ours[name], theirs[name]
            if not isinstance(other, dict):
                ignored.append(f"{group}.{name} replaced")
                continue
            for field in sorted(set(mine) | set(other)):
                if mine.get(field) == other.get(field):
                    continue
                if group == "lanes" and field in AGENT_FIELDS and field in other:
                    problem = agent_field_problem(field, other[field])
                    if problem is None:
                        mine[field] = other[field]
                        continue
                    ignored.append(f"{group}.{name}.{field} ({problem})")
                else:
                    ignored.append(f"{group}.{name}.{field} changed")
    return ignored


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
            changes = loads_strict(argv[2])
        except ValueError as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            print(f"access_tracker: the update is not valid JSON: {why}; nothing was written",
                  file=sys.stderr)  # fmt: skip
            return 2
        lane = bound_lane()
        update(tracker, changes, actor=os.environ.get("ORCHESTREE_AGENT", "agent"), lane=lane)
        return 0
    except InvalidUpdateError as exc:
        print(f"access_tracker: {exc}; nothing was written", file=sys.stderr)
        return 2
    except TrackerFileError as exc:
        print(f"access_tracker: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
