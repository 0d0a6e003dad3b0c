"""Admission by memory (DESIGN.md §15): the pure decision, then a real run whose
third lane waits for memory, says so, and starts when one finishes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exec_helpers import add_lanes, agent_config, cli, make_repo, spawn, tracker, write_script
from orchestree.execution import mem_available_mb
from orchestree.models import Lane
from orchestree.scheduler import Memory, admit, decide


@given(
    available=st.integers(0, 64_000),
    floor=st.integers(0, 64_000),
    sizes=st.lists(st.integers(0, 8_000), min_size=0, max_size=12),
    n_running=st.integers(0, 6),
)
def test_admission_never_overcommits_and_never_deadlocks(
    available: int, floor: int, sizes: list[int], n_running: int
) -> None:
    running = [f"r{i}" for i in range(min(n_running, len(sizes)))]
    ready = [f"l{i}" for i in range(len(sizes) - len(running))]
    estimates = dict(zip([*running, *ready], sizes, strict=True))
    memory = Memory(available, floor, estimates)
    start, wait = admit(ready, running, memory)
    assert start + wait == ready  # in order, a prefix starts
    used = sum(estimates[r] for r in running)
    for n, lane_id in enumerate(start):
        if running or n:  # only a lone first lane may start whatever memory says
            assert available - used >= floor
        used += estimates[lane_id]
    if ready and not running:
        assert start  # one lane can always run
    if wait:
        assert available - used < floor  # it waits only when memory says so


def test_decide_marks_what_memory_holds_as_waiting() -> None:
    lanes = {k: Lane(order=i) for i, k in enumerate(["a", "b", "c"])}
    memory = Memory(10_000, 7_000, {"a": 2_000, "b": 2_000, "c": 2_000})
    first = decide(lanes, set(), 4, memory=memory)
    assert (first.start, first.waiting) == (["a", "b"], ["c"])
    lanes["a"].status = "running"
    lanes["b"].status = "running"
    held = decide(lanes, {"a", "b"}, 4, memory=memory)
    assert (held.start, held.waiting) == ([], ["c"])
    lanes["a"].status = "completed"
    assert decide(lanes, {"b"}, 4, memory=memory).start == ["c"]


SLEEPER = """
lane = sys.argv[1]
log = Path(os.environ["ADMISSION_LOG"])
with log.open("a") as fh:
    fh.write(json.dumps({"lane": lane, "at": time.time(), "event": "start"}) + "\\n")
time.sleep(float(os.environ["ADMISSION_SLEEP_S"]))
Path(f"{lane}.txt").write_text(lane + "\\n")
with log.open("a") as fh:
    fh.write(json.dumps({"lane": lane, "at": time.time(), "event": "end"}) + "\\n")
"""


def test_a_third_lane_waits_for_memory_says_so_and_starts_when_one_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Estimates large against what is free, so the machine's own movements (other
    # processes) stay well inside the margin: 1 running leaves 0.5 E above the floor,
    # 2 running leave 0.5 E below it.
    available = mem_available_mb()
    estimate = max(available // 4, 1)
    floor = max(available - (3 * estimate) // 2, 1)
    script = write_script(tmp_path / "sleeper.py", SLEEPER)
    config = agent_config(
        "sleeper",
        script,
        extra=f"memory_mb = {estimate}\n",
        defaults=f"min_free_mb = {floor}\n",
    ).replace('agent = "shell"', 'agent = "sleeper"')
    repo = make_repo(tmp_path, monkeypatch, config)
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("ADMISSION_LOG", str(events))
    monkeypatch.setenv("ADMISSION_SLEEP_S", "3")
    add_lanes(repo, {name: {"tasks": ["sleep"]} for name in ("one", "two", "three")})
    proc = spawn(repo, "execute")
    shown = ""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        lanes = tracker(repo)["lanes"]
        if not shown and any(v.get("waiting_for") == "memory" for v in lanes.values()):
            shown = cli(repo, "status").out
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "waiting for memory" in shown, shown
    assert "three: waiting for memory" in out
    lanes = tracker(repo)["lanes"]
    assert {v["status"] for v in lanes.values()} == {"completed"}
    assert all(v.get("waiting_for") is None for v in lanes.values())
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    running, most = 0, 0
    for event in sorted(seen, key=lambda e: e["at"]):
        running += 1 if event["event"] == "start" else -1
        most = max(most, running)
    assert most == 2  # never more lanes than memory allows, and two did run together
    third = next(e["at"] for e in seen if e["lane"] == "three" and e["event"] == "start")
    first_end = min(e["at"] for e in seen if e["event"] == "end")
    assert third >= first_end
