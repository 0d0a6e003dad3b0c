"""A store's in-memory snapshot: writes validate and serialise only what they touch,
yet refuse what a whole validation refuses, and never act on stale files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestree import access_tracker
from orchestree.errors import UserError
from orchestree.models import Agent, Lane, Tracker
from orchestree.tracker import TrackerStore

LANES = 40


@pytest.fixture
def path(tmp_path: Path) -> Path:
    folder = tmp_path / ".orchestration"
    folder.mkdir()
    store = TrackerStore(folder / "tracker.json")
    tracker = Tracker(repo=str(tmp_path), base_branch="main", base_commit="c" * 40)
    for n in range(LANES):
        lane_id = f"l{n:03d}"
        deps = [f"l{n - 1:03d}"] if n else []
        tracker.lanes[lane_id] = Lane(tasks=[f"task {n}"], depends_on=deps, data={"n": n})
        tracker.agents[f"agent-{lane_id}"] = Agent(
            worktree=f".worktrees/agent-{lane_id}", lane=lane_id, branch=f"lane-{lane_id}"
        )
    store.create(tracker)
    return folder / "tracker.json"


def on_disk(path: Path) -> Tracker:
    return Tracker.model_validate_json(path.read_bytes())


def test_a_write_gives_the_bytes_a_whole_dump_gives(path: Path) -> None:
    store = TrackerStore(path)
    store.read()

    def change(t: Tracker) -> None:
        t.lanes["l005"].progress = "half way: ünïcode"
        t.agents["agent-l005"].status = "running"
        t.lanes["new"] = Lane(tasks=["more"], depends_on=["l039"])
        del t.agents["agent-l000"]
        t.status = "running"

    written = store.update(change, "test")
    raw = path.read_bytes()
    assert raw == on_disk(path).model_dump_json().encode()
    assert json.loads(raw) == written.model_dump(mode="json")
    assert list(json.loads(raw)["lanes"])[-1] == "new"
    assert "agent-l000" not in json.loads(raw)["agents"]
    assert access_tracker.read_ledger(str(path)) == raw  # the ledger holds the same bytes


def test_writes_in_a_row_keep_the_bytes_a_whole_dump_gives_and_the_lanes_order(
    path: Path,
) -> None:
    # The usual write copies the last write's fragments and redoes the changed ones;
    # a change that moves a lane to the end (removed, then added again) takes the
    # long way. Either way the file is what a whole dump gives, and the ledger too.
    store = TrackerStore(path)
    store.read()
    order = [f"l{n:03d}" for n in range(LANES)]

    def moved(t: Tracker) -> None:
        t.lanes["l020"] = t.lanes.pop("l020")

    changes: list[Callable[[Tracker], None]] = [
        lambda t: setattr(t.lanes["l005"], "progress", "one"),
        lambda t: setattr(t.agents["agent-l007"], "pid", 42),
        moved,
        lambda t: setattr(t.lanes["l020"], "progress", "moved"),
        lambda t: setattr(t.lanes["l005"], "progress", "two"),
    ]
    for n, change in enumerate(changes):
        store.update(change, "test")
        raw = path.read_bytes()
        assert raw == on_disk(path).model_dump_json().encode(), n
        assert access_tracker.read_ledger(str(path)) == raw
        if change is moved:
            order = [k for k in order if k != "l020"] + ["l020"]
        assert list(json.loads(raw)["lanes"]) == order
    lanes = on_disk(path).lanes
    assert (lanes["l005"].progress, lanes["l020"].progress) == ("two", "moved")
    assert on_disk(path).agents["agent-l007"].pid == 42
    assert TrackerStore(path).read() == store.read()  # a cold reader sees the same


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.lanes["l003"].depends_on.append("nowhere"), "not a lane"),
        (lambda t: t.lanes["l000"].depends_on.append("l039"), "cycle"),
        (lambda t: t.lanes["l003"].tasks.append(7), "tasks"),
        (lambda t: t.lanes["l003"].merge.conflicts.append(5), "conflicts"),
        (lambda t: t.lanes["l003"].data.update(big="x" * 70_000), "data"),
        (lambda t: setattr(t.lanes["l003"], "status", "merged"), "cannot go from 'pending'"),
        (lambda t: t.lanes.__setitem__("l001", Lane.model_construct(status="lost")), "status"),
        (lambda t: t.agents["agent-l002"].__dict__.update(status="gone"), "status"),
        (lambda t: t.lanes.pop("l010"), "not a lane"),  # l011 depends on it
        (lambda t: setattr(t, "lanes", {"-bad": Lane()}), "lane id"),
    ],
)
def test_what_a_change_touches_is_checked_as_a_whole_validation_would(
    path: Path, change: object, problem: str
) -> None:
    store = TrackerStore(path)
    store.read()  # a warm snapshot: the fast path
    before = path.read_bytes()
    with pytest.raises(UserError) as caught:
        store.update(change, "test")  # type: ignore[arg-type]
    assert problem in str(caught.value)
    assert path.read_bytes() == before  # nothing written
    assert store.read().lanes["l003"].status == "pending"  # the snapshot is unharmed
    assert store.read().lanes["l003"].depends_on == ["l002"]
    store.update(lambda t: setattr(t.lanes["l003"], "progress", "ok"), "test")  # still works
    assert on_disk(path).lanes["l003"].progress == "ok"


def test_a_write_by_another_store_is_seen(path: Path) -> None:
    mine, theirs = TrackerStore(path), TrackerStore(path)
    mine.update(lambda t: setattr(t.lanes["l001"], "progress", "mine"), "test")
    theirs.update(lambda t: setattr(t.lanes["l002"], "progress", "theirs"), "test")
    mine.update(lambda t: setattr(t.lanes["l003"], "progress", "mine again"), "test")
    lanes = on_disk(path).lanes
    assert (lanes["l001"].progress, lanes["l002"].progress) == ("mine", "theirs")
    assert lanes["l003"].progress == "mine again"


def test_an_agents_write_is_taken_and_a_forged_field_left_out(path: Path) -> None:
    store = TrackerStore(path)
    store.read()
    access_tracker.update(str(path), {"lanes": {"l004": {"progress": "agent says"}}})
    assert store.read().lanes["l004"].progress == "agent says"
    forged = json.loads(path.read_bytes())
    forged["lanes"]["l004"]["status"] = "completed"
    path.write_text(json.dumps(forged))
    assert store.read().lanes["l004"].status == "pending"
    assert "lanes.l004.status changed" in store.take_edits()
    store.update(lambda t: setattr(t.lanes["l005"], "progress", "p"), "test")
    assert on_disk(path).lanes["l004"].status == "pending"
    assert on_disk(path).lanes["l004"].progress == "agent says"


def test_what_a_reader_holds_does_not_change_under_it(path: Path) -> None:
    store = TrackerStore(path)
    seen = store.read()
    store.update(lambda t: setattr(t.lanes["l006"], "status", "running"), "test")
    store.update(lambda t: t.lanes.pop("l039"), "test")
    assert seen.lanes["l006"].status == "pending"
    assert "l039" in seen.lanes
    assert store.read().lanes["l006"].status == "running"
    assert "l039" not in store.read().lanes


def test_a_ledger_changed_outside_is_refused_even_with_a_warm_snapshot(path: Path) -> None:
    store = TrackerStore(path)
    store.read()
    ledger = path.parent / "ledger" / "ledger.json"
    mac, _, payload = ledger.read_bytes().partition(b"\n")
    ledger.write_bytes(mac + b"\n" + payload.replace(b'"pending"', b'"merged"', 1))
    with pytest.raises(Exception, match="does not match its key"):
        store.read()
