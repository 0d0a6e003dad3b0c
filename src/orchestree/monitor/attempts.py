"""Each lane's attempts, start to end, for the dashboard's timeline (issue 16).

The tracker holds only a lane's current attempt (`started_at`, `finished_at`); every
earlier one lives in `events.jsonl`, where orchestree appends `lane-start` (lane,
attempt) and `lane-end` (lane, status, attempt) as it records them, and `rework` when
a finished attempt goes back to its agent. `EventsReader` follows that file by offset,
so a dashboard polled every second reads each line once; `timeline` folds what it
found into the JSON the page draws, against the tracker it is shown with.

Read-only, like every view. The events file is writable by agents (their helper
appends to it), so what comes from it is only drawn, never acted on: only lanes the
tracker knows are shown, and only events of orchestree's own kinds and shapes count.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestree.access_tracker import loads_strict
from orchestree.monitor.fields import as_dict, as_int, as_str, parse_time

# The lines of the events a timeline needs, found by one scan of what was appended:
# a 500-lane run's file holds mostly progress events, which are never parsed.
WANTED = re.compile(rb'"event": ?"(?:lane-start|lane-end|rework|execute-start)"')
# What a lane-end's status says of the attempt that ended: "pending" means a retry.
ENDED = {"pending": "retried"}
# What a rework says of the finished attempt it sends back (models.ReworkReason).
REWORKED = {"conflict": "conflict", "rerun": "conflict", "verify": "verify_failed",
            "review": "review"}  # fmt: skip
# A lane's final verdict, when its last attempt completed: the merge's word wins.
MERGE_WORDS = frozenset({"merged", "conflict", "verify_failed"})


@dataclass
class Attempt:
    """One attempt of a lane: its number, when it ran, and how it ended (None: the
    events say nothing yet; the tracker then tells)."""

    attempt: int
    start: str
    end: str | None = None
    outcome: str | None = None


@dataclass
class History:
    """What the events said so far: attempts per lane, and when executions began."""

    lanes: dict[str, list[Attempt]] = field(default_factory=dict)
    run_starts: list[str] = field(default_factory=list)


def fold(history: History, events: Iterable[Mapping[str, Any]]) -> None:
    """Add `events` (parsed lines of events.jsonl, in order) to `history`."""
    for event in events:
        kind, ts, lane = event.get("event"), event.get("ts"), event.get("lane")
        if not isinstance(ts, str) or parse_time(ts) is None:
            continue
        if kind == "execute-start":
            history.run_starts.append(ts)
        if not isinstance(lane, str):
            continue
        attempts = history.lanes.setdefault(lane, [])
        if kind == "lane-start":
            if attempts and attempts[-1].end is None:  # its end line was lost to a crash
                attempts[-1].end = ts
            number = as_int(event.get("attempt"))
            attempts.append(Attempt(attempt=number or len(attempts) + 1, start=ts))
        elif kind == "lane-end" and attempts and attempts[-1].end is None:
            status = as_str(event.get("status"), "failed")
            attempts[-1].end, attempts[-1].outcome = ts, ENDED.get(status, status)
        elif kind == "rework" and attempts and attempts[-1].end is not None:
            reason = as_str(event.get("reason"))
            attempts[-1].outcome = REWORKED.get(reason, attempts[-1].outcome)


class EventsReader:
    """Follows `events.jsonl`: each call reads only what was appended since the last.

    A new file (another inode) or a shorter one (replaced) is read again from the top;
    a line still being written (no newline yet) waits for the next call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.history = History()
        self._inode: int | None = None
        self._offset = 0

    def read(self) -> History:
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_ino != self._inode or st.st_size < self._offset:
                    self.history, self._inode, self._offset = History(), st.st_ino, 0
                if st.st_size == self._offset:
                    return self.history
                fh.seek(self._offset)
                chunk = fh.read(st.st_size - self._offset)
        except OSError:
            return self.history  # no events yet (or unreadable): the tracker still tells
        whole = chunk.rfind(b"\n") + 1
        self._offset += whole
        fold(self.history, _parsed(_wanted_lines(chunk[:whole])))
        return self.history


def _wanted_lines(chunk: bytes) -> list[bytes]:
    lines, end = [], 0
    for found in WANTED.finditer(chunk):
        if found.start() < end:
            continue  # a second match inside a line already taken
        begin = chunk.rfind(b"\n", 0, found.start()) + 1
        end = chunk.find(b"\n", found.end())
        lines.append(chunk[begin:end])
    return lines


def _parsed(lines: list[bytes]) -> Iterable[Mapping[str, Any]]:
    for line in lines:
        try:
            value = loads_strict(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue  # a torn or forged line: the timeline skips it
        if isinstance(value, dict):
            yield value


def _since(created: datetime | None, ts: str) -> bool:
    when = parse_time(ts)
    return when is not None and (created is None or when >= created)


def lane_attempts(raw: Mapping[str, Any], found: list[Attempt]) -> list[dict[str, Any]]:
    """The bars of one lane: its attempts from the events, completed by what the
    tracker says of the current one (a run without events shows that one alone)."""
    status = as_str(raw.get("status"), "pending")
    attempts = [Attempt(a.attempt, a.start, a.end, a.outcome) for a in found]
    started = raw.get("started_at")
    if not attempts and isinstance(started, str) and parse_time(started) is not None:
        number = as_int(raw.get("attempts")) or 1
        attempts.append(Attempt(number, started))
    if attempts:
        last = attempts[-1]
        if status == "running":
            last.end, last.outcome = None, "running"
        elif last.end is None:  # ended without a lane-end line (or the events are gone)
            finished = raw.get("finished_at")
            last.end = finished if isinstance(finished, str) else None
            last.outcome = status
        if status in MERGE_WORDS and last.outcome == "completed":
            last.outcome = status
    for attempt in attempts:
        if attempt.outcome is None:  # its end line was lost: the next attempt began
            attempt.outcome = "interrupted"
    return [vars(a) for a in attempts]


def timeline(tracker: Mapping[str, Any], history: History, now: datetime) -> dict[str, Any]:
    """`{now, start, lanes: {lane: [{attempt, start, end, outcome}]}}` for the page.

    Only events since the tracker was created count (a reset starts a new tracker but
    keeps appending to the same events file); `start` is when this run's first
    execution or attempt began, None before anything started."""
    created = parse_time(tracker.get("created_at"))
    lanes: dict[str, Any] = {}
    for key, raw_lane in as_dict(tracker.get("lanes")).items():
        found = [a for a in history.lanes.get(str(key), []) if _since(created, a.start)]
        bars = lane_attempts(as_dict(raw_lane), found)
        if bars:
            lanes[str(key)] = bars
    starts = [ts for ts in history.run_starts if _since(created, ts)]
    starts += [bars[0]["start"] for bars in lanes.values()]
    start = min(starts, key=lambda ts: parse_time(ts) or now, default=None)
    return {"now": now.isoformat(timespec="milliseconds"), "start": start, "lanes": lanes}
