"""Each lane's attempts for the dashboard's timeline (monitor/attempts.py): folded from
events.jsonl, completed by the tracker, and followed by offset as the file grows."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _monitor_trackers import lane, tracker
from orchestree.monitor.attempts import EventsReader, History, fold, timeline

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def ev(ts: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"ts": f"2026-01-01T{ts}.000Z", "pid": 1, "actor": "orchestree", "event": event,
            **fields}  # fmt: skip


RETRIED_RUN = [
    ev("11:00:00", "execute-start"),
    ev("11:00:01", "lane-start", lane="a", attempt=1),
    ev("11:00:02", "progress", lane="a"),
    ev("11:00:05", "lane-end", lane="a", status="pending", attempt=1),
    ev("11:00:06", "lane-start", lane="a", attempt=2),
    ev("11:00:09", "lane-end", lane="a", status="completed", attempt=2),
    ev("11:00:10", "lane-start", lane="b", attempt=1),
    ev("11:00:12", "lane-end", lane="b", status="completed", attempt=1),
    ev("11:00:20", "rework", lane="b", reason="conflict", count=1),
    ev("11:00:21", "lane-start", lane="b", attempt=2),
]


def run_tracker(**statuses: str) -> dict[str, Any]:
    lanes = {k: lane(status=v, started_at="2026-01-01T11:00:06.000Z") for k, v in statuses.items()}
    return tracker(lanes, created_at="2026-01-01T10:59:00.000Z")


def test_a_retried_lane_has_two_attempts_and_a_reworked_one_says_why() -> None:
    history = History()
    fold(history, RETRIED_RUN)
    got = timeline(run_tracker(a="merged", b="running"), history, NOW)
    assert got["start"] == "2026-01-01T11:00:00.000Z"
    assert got["now"] == "2026-01-01T12:00:00.000+00:00"
    assert got["lanes"]["a"] == [
        {"attempt": 1, "start": "2026-01-01T11:00:01.000Z", "end": "2026-01-01T11:00:05.000Z",
         "outcome": "retried"},
        {"attempt": 2, "start": "2026-01-01T11:00:06.000Z", "end": "2026-01-01T11:00:09.000Z",
         "outcome": "merged"},
    ]  # fmt: skip
    assert [(b["outcome"], b["end"]) for b in got["lanes"]["b"]] == [
        ("conflict", "2026-01-01T11:00:12.000Z"),
        ("running", None),
    ]


def test_only_this_trackers_events_count_and_only_its_lanes() -> None:
    history = History()
    before_reset = [
        ev("10:00:00", "execute-start"),
        ev("10:00:01", "lane-start", lane="a", attempt=1),
        ev("10:00:02", "lane-end", lane="a", status="failed", attempt=1),
    ]
    fold(history, [*before_reset, *RETRIED_RUN])
    got = timeline(run_tracker(a="completed"), history, NOW)
    assert list(got["lanes"]) == ["a"]  # b is not in this tracker
    assert [b["outcome"] for b in got["lanes"]["a"]] == ["retried", "completed"]
    assert got["start"] == "2026-01-01T11:00:00.000Z"


def test_without_events_the_tracker_draws_the_current_attempt() -> None:
    lanes = {
        "done": lane(status="failed", attempts=2, started_at="2026-01-01T11:00:00.000Z",
                     finished_at="2026-01-01T11:05:00.000Z"),
        "runs": lane(status="running", attempts=1, started_at="2026-01-01T11:01:00.000Z"),
        "waits": lane(status="pending"),
    }  # fmt: skip
    got = timeline(tracker(lanes), History(), NOW)
    assert got["lanes"] == {
        "done": [{"attempt": 2, "start": "2026-01-01T11:00:00.000Z",
                  "end": "2026-01-01T11:05:00.000Z", "outcome": "failed"}],
        "runs": [{"attempt": 1, "start": "2026-01-01T11:01:00.000Z", "end": None,
                  "outcome": "running"}],
    }  # fmt: skip
    assert got["start"] == "2026-01-01T11:00:00.000Z"
    assert timeline(tracker({}), History(), NOW)["start"] is None


def test_an_attempt_whose_end_was_never_written_is_interrupted() -> None:
    history = History()
    events = [
        ev("11:00:01", "lane-start", lane="a", attempt=1),
        ev("11:00:30", "lane-start", lane="a", attempt=2),
        ev("11:00:40", "lane-end", lane="a", status="completed", attempt=2),
    ]
    fold(history, events)
    got = timeline(run_tracker(a="completed"), history, NOW)
    assert [(b["attempt"], b["outcome"], b["end"]) for b in got["lanes"]["a"]] == [
        (1, "interrupted", "2026-01-01T11:00:30.000Z"),  # it ended when the next one began
        (2, "completed", "2026-01-01T11:00:40.000Z"),
    ]


def write_lines(path: Path, events: list[dict[str, Any]], tail: str = "") -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in events) + tail)


def test_the_reader_follows_the_file_as_it_grows(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    reader = EventsReader(path)
    assert reader.read().lanes == {}  # no file yet
    write_lines(path, RETRIED_RUN[:3])
    assert [a.attempt for a in reader.read().lanes["a"]] == [1]
    # A line still being written waits; torn, forged and non-JSON lines are skipped.
    half = json.dumps(RETRIED_RUN[3])
    write_lines(path, [], tail='{"event": "lane-start", NaN}\nnot json "lane-end"\n' + half[:20])
    assert reader.read().lanes["a"][0].end is None
    with path.open("a", encoding="utf-8") as fh:
        fh.write(half[20:] + "\n")
    history = reader.read()
    assert history.lanes["a"][0].outcome == "retried"
    assert reader.read() is history  # nothing new: nothing read
    # A replaced file (a new inode) is read from its start.
    other = tmp_path / "other.jsonl"
    write_lines(other, RETRIED_RUN[6:8])
    os.replace(other, path)
    assert sorted(reader.read().lanes) == ["b"]
