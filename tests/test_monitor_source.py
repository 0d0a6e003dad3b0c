from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _monitor_trackers import agent, lane, tracker, write
from clock_helpers import in_namespace, stat_copy, step_btime
from orchestree import procs
from orchestree.monitor.source import TrackerReader

WARNING_KINDS = (
    "import json, sys; from orchestree.access_tracker import read; "
    "from orchestree.monitor.source import snapshot_now; "
    "print(json.dumps([w.kind for w in snapshot_now(read(sys.argv[1]), 3600.0).warnings]))"
)


@pytest.mark.parametrize("step_s", [1, -1, 3600], ids=["+1s", "-1s", "+1h"])
def test_the_process_gone_warning_does_not_fire_on_a_clock_step(
    tmp_path: Path, step_s: int
) -> None:
    """The monitor's real process source, in a namespace whose btime moved."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        ident = procs.identity(sleeper.pid)
        assert ident is not None
        recorded = {"pid": ident.pid, "pid_ticks": ident.ticks, "boot_id": ident.boot_id}
        path = tmp_path / "tracker.json"
        write(
            path,
            tracker(
                {"work": lane(status="running", attempts=1)},
                {"agent-work": agent("work", status="running", **recorded)},
                phase=3,
                status="running",
            ),
        )
        copy = stat_copy(tmp_path)
        step_btime(copy, step_s)
        argv = in_namespace(copy, [sys.executable, "-c", WARNING_KINDS, str(path)])

        def kinds() -> list[str]:
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            found: list[str] = json.loads(out)
            return found

        assert kinds() == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert kinds() == ["dead_pid"]  # and it does fire when the process is gone


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
