"""TrackerStore: the one owner of tracker.json (locked, atomic, validated, audited)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import env, snapshot
from orchestree import access_tracker
from orchestree.errors import LockTimeout, TrackerError, UserError
from orchestree.models import Lane, Tracker
from orchestree.tracker import TrackerStore

HOLD = """
import sys, time
from orchestree import access_tracker
with access_tracker.locked(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(120)
"""

STORE_WRITER = """
import sys
from pathlib import Path
from orchestree.tracker import TrackerStore
store = TrackerStore(Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    store.merge({"lanes": {"work": {"data": {f"{sys.argv[2]}-{i}": i}}}}, actor=sys.argv[2])
"""


@pytest.fixture
def orch(tmp_path: Path) -> Path:
    folder = tmp_path / ".orchestration"
    folder.mkdir()
    return folder


@pytest.fixture
def store(orch: Path) -> TrackerStore:
    store = TrackerStore(orch / "tracker.json")
    store.create(Tracker(repo=str(orch.parent), base_branch="main", base_commit="c" * 40))

    def add(tracker: Tracker) -> None:
        tracker.lanes["work"] = Lane(tasks=["Work"])

    store.update(add, "add-lane", lanes=["work"])
    return store


def events(orch: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (orch / "events.jsonl").read_text("utf-8").splitlines()]


@pytest.fixture
def holder(orch: Path) -> Any:
    """A process holding the tracker lock until the test ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(orch / "tracker.lock")],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding"
    yield proc
    proc.kill()
    proc.communicate(timeout=10)


def test_create_then_read_round_trips(store: TrackerStore, orch: Path) -> None:
    tracker = store.read()
    assert tracker.repo == str(orch.parent)
    assert list(tracker.lanes) == ["work"]
    assert store.read_raw()["lanes"]["work"]["tasks"] == ["Work"]
    assert [e["event"] for e in events(orch)] == ["init", "add-lane"]
    assert events(orch)[1]["lanes"] == ["work"]
    assert all(e["pid"] == os.getpid() and e["ts"].endswith("Z") for e in events(orch))


def test_every_write_keeps_the_previous_version_and_stamps_updated_at(
    store: TrackerStore, orch: Path
) -> None:
    before = (orch / "tracker.json").read_bytes()
    stamp = store.read().updated_at
    time.sleep(0.002)
    written = store.merge({"lanes": {"work": {"progress": "1/3"}}})
    assert written.lanes["work"].progress == "1/3"
    assert (orch / "tracker.json.bak").read_bytes() == before
    assert written.updated_at > stamp
    assert store.read() == written


def test_update_writes_nothing_when_the_change_raises(store: TrackerStore, orch: Path) -> None:
    before = snapshot(orch)
    count = len(events(orch))

    def change(tracker: Tracker) -> None:
        tracker.phase = 2
        raise UserError("changed my mind")

    with pytest.raises(UserError, match="changed my mind"):
        store.update(change, "noop")
    assert snapshot(orch) == before
    assert len(events(orch)) == count


def test_update_many_is_one_write_with_each_event_in_order(store: TrackerStore, orch: Path) -> None:
    before = (orch / "tracker.json").read_bytes()
    count = len(events(orch))

    def run(tracker: Tracker) -> None:
        tracker.lanes["work"].status = "running"

    def done(tracker: Tracker) -> None:
        tracker.lanes["work"].progress = "done"

    def phase(tracker: Tracker) -> None:
        tracker.phase = 3

    written = store.update_many(
        [(run, "lane-start", {"lane": "work"}), (phase, "phase", {}), (done, "progress", {})]
    )

    assert written.lanes["work"].status == "running"
    assert written.phase == 3
    assert written.lanes["work"].progress == "done"
    # One write: the copy it kept is the tracker from before all three, not between them.
    assert (orch / "tracker.json.bak").read_bytes() == before
    assert [e["event"] for e in events(orch)[count:]] == ["lane-start", "phase", "progress"]
    assert events(orch)[count + 1]["tracker"] == {"phase": 3, "status": "initialised"}
    assert store.read() == written


def test_update_many_writes_nothing_when_one_change_is_refused(
    store: TrackerStore, orch: Path
) -> None:
    before = snapshot(orch)
    count = len(events(orch))

    def progress(tracker: Tracker) -> None:
        tracker.lanes["work"].progress = "half"

    def merged(tracker: Tracker) -> None:
        tracker.lanes["work"].status = "merged"  # pending -> merged: not a transition

    with pytest.raises(Exception, match="cannot go from 'pending' to 'merged'"):
        store.update_many([(progress, "progress", {}), (merged, "lane-end", {})])
    assert snapshot(orch) == before
    assert len(events(orch)) == count


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        (
            {"lanes": {"work": {"priority": "urgent"}}},
            "tracker update: field 'lanes.work.priority'",
        ),
        ({"lanes": {"work": {"tasks": "one"}}}, "field 'lanes.work.tasks'"),
        ({"lanes": {"work": {"depends_on": ["work"]}}}, "lane 'work' depends on itself"),
        ({"lanes": {"work": {"status": "running", "statuss": 1}}}, "unknown field"),
        ({"lanes": {"work": {"status": "merged"}}}, "cannot go from 'pending' to 'merged'"),
        ({"status": "exploded"}, "field 'status'"),
        ({"version": "9.0.0"}, "may not change `version` (from '1.0.0' to '9.0.0')"),
        ({"version": None}, "may not change `version` (from '1.0.0' to None)"),
    ],
)
def test_merge_validates_the_whole_tracker_before_writing(
    store: TrackerStore, orch: Path, changes: dict[str, Any], needle: str
) -> None:
    before = snapshot(orch)
    with pytest.raises(UserError) as caught:
        store.merge(changes)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)
    assert snapshot(orch) == before


def test_merge_refuses_something_that_is_not_an_object(store: TrackerStore) -> None:
    with pytest.raises(UserError, match="must be a JSON object"):
        store.merge(["lanes"])  # type: ignore[arg-type]


def test_a_status_path_through_the_state_machine(store: TrackerStore) -> None:
    for status in ("running", "completed", "merged"):
        assert store.merge({"lanes": {"work": {"status": status}}}).lanes["work"].status == status
    with pytest.raises(UserError, match="from 'merged' a lane may go to: nothing"):
        store.merge({"lanes": {"work": {"status": "pending"}}})


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "is not valid JSON"),
        (b'{"version": "1.0.0", "lanes": {', "is not valid JSON"),
        (b"[1, 2]", "does not hold a JSON object"),
        (b'{"version": "x"}', "has no valid version"),
        (b'{"version": "2.0.0"}', "is version 2.0.0, newer than this orchestree understands"),
    ],
)
def test_a_broken_tracker_is_refused_by_reads_and_writes(
    store: TrackerStore, orch: Path, content: bytes, needle: str
) -> None:
    drop_ledger(orch)  # a tracker from before ledgers: the file is all there is
    (orch / "tracker.json").write_bytes(content)
    before = snapshot(orch)
    attempts: list[Callable[[], object]] = [
        store.read,
        store.read_raw,
        lambda: store.merge({"phase": 1}),
        lambda: store.update(lambda t: None, "noop"),
    ]
    for attempt in attempts:
        with pytest.raises(TrackerError) as caught:
            attempt()
        assert needle in str(caught.value)
        assert str(orch / "tracker.json") in str(caught.value)
    assert snapshot(orch) == before


def test_a_missing_tracker_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(TrackerError, match="does not exist; run `orchestree init`"):
        TrackerStore(tmp_path / "tracker.json").read()


def test_lock_timeout_names_the_holder(
    store: TrackerStore, orch: Path, holder: subprocess.Popen[str]
) -> None:
    before = snapshot(orch)
    quick = TrackerStore(store.path, lock_timeout=0.3)
    with pytest.raises(LockTimeout) as caught:
        quick.merge({"phase": 1})
    assert f"held by process {holder.pid}" in str(caught.value)
    assert str(orch / "tracker.lock") in str(caught.value)
    assert caught.value.exit_code == 3
    with pytest.raises(LockTimeout, match=f"process {holder.pid}"):
        quick.replace(store.read(), "reset")
    assert snapshot(orch) == before


def test_a_waiting_writer_says_who_it_waits_for(
    store: TrackerStore, holder: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LockTimeout):
        TrackerStore(store.path, lock_timeout=1.2).merge({"phase": 1})
    err = capsys.readouterr().err
    assert f"waiting for the tracker lock held by process {holder.pid}" in err
    assert err.count("waiting") == 1


def test_concurrent_store_writers_lose_nothing(store: TrackerStore, orch: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STORE_WRITER, str(store.path), f"s{n}", "30"],
            env=env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    assert [(p.wait(timeout=120), p.communicate()[1]) for p in procs] == [(0, "")] * 4
    data = store.read().lanes["work"].data
    assert data == {f"s{n}-{i}": i for n in range(4) for i in range(30)}
    assert sum(e["event"] == "update" for e in events(orch)) == 120


def test_archive_copies_the_tracker_under_a_fresh_name(store: TrackerStore, orch: Path) -> None:
    first = store.archive(orch / "archive", "20250101T000000")
    second = store.archive(orch / "archive", "20250101T000000")
    assert (first.name, second.name) == ("20250101T000000.json", "20250101T000000-1.json")
    assert json.loads(first.read_text("utf-8")) == store.read_raw()
    assert store.path.exists()


def test_the_store_and_the_helper_agree_on_the_state_machine() -> None:
    from orchestree import models

    assert models.LANE_TRANSITIONS is access_tracker.LANE_TRANSITIONS
    assert models.AGENT_STATUSES is access_tracker.AGENT_STATUSES


def test_a_field_an_agent_broke_stops_orchestree_cleanly_until_repaired(
    store: TrackerStore, orch: Path
) -> None:
    # A tracker from before ledgers, edited by hand: the file is all there is to go by.
    drop_ledger(orch)
    data = store.read_raw()
    data["lanes"]["work"]["priority"] = "urgent"
    store.path.write_text(json.dumps(data), "utf-8")
    before = snapshot(orch)

    def add(tracker: Tracker) -> None:
        tracker.lanes["more"] = Lane()

    for attempt in (store.read, lambda: store.update(add, "add-lane")):
        with pytest.raises(TrackerError) as caught:
            attempt()
        message = str(caught.value)
        assert f"{store.path} is not a valid tracker" in message
        assert "field 'lanes.work.priority'" in message
        assert "the last good copy is" in message
    assert snapshot(orch) == before
    repaired = store.merge({"lanes": {"work": {"priority": "high"}}})
    assert repaired.lanes["work"].priority == "high"


def test_a_dependency_cycle_on_disk_is_an_invalid_tracker(store: TrackerStore, orch: Path) -> None:
    drop_ledger(orch)
    data = store.read_raw()
    data["lanes"]["work"]["depends_on"] = ["work"]
    store.path.write_text(json.dumps(data), "utf-8")
    with pytest.raises(TrackerError, match=r"is not a valid tracker \(lane 'work' depends on"):
        store.read()


def drop_ledger(orch: Path) -> None:
    for name in ("ledger.json", "ledger.key"):
        (orch / "ledger" / name).unlink()


def test_a_ledger_beside_the_tracker_moves_into_its_folder(store: TrackerStore, orch: Path) -> None:
    """Trackers from before the `ledger/` folder keep their ledger: it moves, once, and
    a move cut short between its two files is finished by the next call."""
    from orchestree import access_tracker

    folder = orch / "ledger"
    for name in ("ledger.json", "ledger.key"):  # the layout of the previous release
        (folder / name).rename(orch / name)
    folder.rmdir()
    before = store.read_raw()
    assert store.read().lanes.keys() == before["lanes"].keys()
    assert sorted(p.name for p in folder.iterdir()) == ["ledger.json", "ledger.key"]
    assert not (orch / "ledger.json").exists()
    # Cut short: the key moved, the ledger not yet.
    (folder / "ledger.json").rename(orch / "ledger.json")
    assert access_tracker.read_ledger(str(store.path)) is not None
    assert not (orch / "ledger.json").exists()
