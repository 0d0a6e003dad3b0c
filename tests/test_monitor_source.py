from __future__ import annotations

from pathlib import Path

from _monitor_trackers import lane, tracker, write
from orchestree.monitor.source import TrackerReader


def test_the_reader_parses_only_when_the_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "tracker.json"
    write(path, tracker({"a": lane()}))
    reader = TrackerReader(path)
    first = reader.read()
    assert first.changed
    assert first.notice is None
    assert first.tracker is not None
    again = reader.read()
    assert not again.changed
    assert again.tracker is first.tracker
    write(path, tracker({"a": lane(status="running")}))
    replaced = reader.read()
    assert replaced.changed
    assert replaced.tracker is not None
    assert replaced.tracker["lanes"]["a"]["status"] == "running"


def test_a_missing_tracker_is_a_notice_not_an_error(tmp_path: Path) -> None:
    reading = TrackerReader(tmp_path / "tracker.json").read()
    assert reading.tracker is None
    assert reading.notice is not None
    assert "does not exist; run `orchestree init`" in reading.notice


def test_a_torn_tracker_keeps_the_last_good_read(tmp_path: Path) -> None:
    path = tmp_path / "tracker.json"
    write(path, tracker({"a": lane()}))
    reader = TrackerReader(path)
    good = reader.read().tracker
    path.write_text('{"version": "1.0.0", "lanes": {', encoding="utf-8")
    torn = reader.read()
    assert torn.tracker is good
    assert torn.notice is not None
    assert "is not valid JSON" in torn.notice
    assert torn.notice.startswith("showing the last good read: ")
    path.unlink()
    gone = reader.read()
    assert gone.tracker is good
    assert gone.notice is not None
    assert "does not exist" in gone.notice
    write(path, tracker({"b": lane()}))
    back = reader.read()
    assert back.notice is None
    assert back.tracker is not None
    assert list(back.tracker["lanes"]) == ["b"]


def test_a_tracker_from_a_newer_orchestree_is_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "tracker.json"
    write(path, {**tracker(), "version": "2.0.0"})
    reading = TrackerReader(path).read()
    assert reading.tracker is None
    assert reading.notice is not None
    assert "upgrade orchestree" in reading.notice
