"""Tracker store benchmark: throughput and latency of durable locked updates, the size
of a 500-lane tracker, and how fast the CLI starts.

    .venv/bin/python bench/tracker_bench.py [--quick]

Prints one markdown table (figure, measured, baseline, ratio, target) and writes
nothing else: every file it makes lives in a temporary folder it removes. The
baselines are the same work done bare (lock, write, fsync, replace, fsync the
folder: no JSON, no validation, no backup or event), so a busy machine shows in
both; the last row says how busy it was.
Targets (issue 2, on a 2-core machine): one in-process writer >= 500 updates/s;
16 writer processes p99 < 100 ms; a 500-lane tracker < 1 MiB; `orchestree status
--json` starts in at most 1.5x the time of a bare `python -c "import typer"`.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _rows import emit

from orchestree import access_tracker
from orchestree.models import Agent, Lane, Tracker
from orchestree.tracker import TrackerStore

IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@orchestree.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@orchestree.invalid",
}
ENV = {**os.environ, **IDENTITY}
ORCHESTREE = str(Path(sys.executable).with_name("orchestree"))

# One writer process: waits for the start file, then times each durable update.
WRITER = """
import json, os, sys, time
from pathlib import Path
kind, tracker, name, count, start = sys.argv[1:6]
if kind == "store":
    from orchestree.tracker import TrackerStore
    store = TrackerStore(Path(tracker))
    def update(changes): store.merge(changes, actor=name)
elif kind == "helper":
    from orchestree import access_tracker
    def update(changes): access_tracker.update(tracker, changes, actor=name)
else:  # bare: the same lock and durable replace of the same bytes, nothing else
    from orchestree import access_tracker
    folder = os.path.dirname(tracker)
    payload = open(tracker, "rb").read()
    def update(changes):
        with access_tracker.locked(os.path.join(folder, "tracker.lock")):
            tmp = os.path.join(folder, f".bare.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, payload)
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, tracker + ".bare")
            dfd = os.open(folder, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
while not os.path.exists(start):
    time.sleep(0.0005)
took = []
for i in range(int(count)):
    began = time.perf_counter()
    update({"lanes": {f"lane-{i % 24:02d}": {"data": {f"{name}-{i}": i}}}})
    took.append(time.perf_counter() - began)
print(json.dumps(took))
"""


def realistic_lane(n: int) -> Lane:
    lane_id = f"lane-{n:03d}"
    return Lane(
        name=f"Lane {n}: tighten the {lane_id} module",
        tasks=[
            f"Read src/pkg/module_{n}.py and its tests",
            f"Fix the failing case in tests/test_module_{n}.py::test_edge_{n}",
            "Add type hints to every public function and run mypy",
            "Write a short report of what changed and why",
        ],
        results=[f"docs/_generated/{lane_id}/report.md", f"docs/_generated/{lane_id}/diff.txt"],
        priority=("high", "medium", "low")[n % 3],
        depends_on=[f"lane-{n - 1:03d}"] if n % 5 else [],
        agent="claude",
        timeout_s=3600,
        max_attempts=2,
        status="completed",
        attempts=1,
        progress="100% complete: 4 of 4 tasks done, report written",
        data={"tests_passed": 41 + n % 7, "files": [f"src/pkg/module_{n}.py"], "notes": "ok"},
        head_commit=f"{n:040x}",
        start_commit="a" * 40,
        changed_files=[f"src/pkg/module_{n}.py", f"tests/test_module_{n}.py"],
        started_at="2025-01-01T00:00:00.000Z",
        finished_at="2025-01-01T00:12:34.567Z",
        session_id=f"session-{n:08d}",
        num_turns=12,
        cost_usd=0.4321,
        order=n,
    )


def realistic_tracker(root: Path, lanes: int) -> Tracker:
    tracker = Tracker(repo=str(root), base_branch="main", base_commit="b" * 40, phase=3)
    for n in range(lanes):
        lane_id = f"lane-{n:03d}"
        tracker.lanes[lane_id] = realistic_lane(n)
        tracker.agents[f"agent-{lane_id}"] = Agent(
            worktree=f".worktrees/agent-{lane_id}",
            lane=lane_id,
            status="completed",
            branch=f"lane-{lane_id}",
            agent="claude",
            pid=40000 + n,
            pid_started=1735689600.25,
            started_at="2025-01-01T00:00:00.000Z",
            finished_at="2025-01-01T00:12:34.567Z",
            exit_code=0,
            log=f".orchestration/logs/agent-{lane_id}.log",
        )
    return tracker


def fresh_store(folder: Path, lanes: int) -> TrackerStore:
    folder.mkdir(parents=True)
    store = TrackerStore(folder / "tracker.json")
    tracker = realistic_tracker(folder, lanes)
    for lane in tracker.lanes.values():  # writers update lanes that are still running
        lane.status, lane.progress = "running", "started"
    store.create(tracker)
    return store


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def raw_durable_writes(folder: Path, payload: bytes, count: int) -> float:
    """Writes/s of the bare mechanism: flock, write, fsync, replace, fsync dir."""
    lock = str(folder / "raw.lock")
    target = folder / "raw.json"
    began = time.perf_counter()
    for _ in range(count):
        with access_tracker.locked(lock):
            tmp = folder / ".raw.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, payload)
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, target)
            dfd = os.open(folder, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
    return count / (time.perf_counter() - began)


def in_process(
    update: Callable[[dict[str, Any]], Any], count: int, width: int = 2
) -> tuple[float, list[float]]:
    """`count` updates of 24 lanes' data; `width`: the digits of the store's lane ids."""
    took = []
    began = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        update({"lanes": {f"lane-{i % 24:0{width}d}": {"data": {f"k{i}": i}}}})
        took.append(time.perf_counter() - t0)
    return count / (time.perf_counter() - began), took


def processes(kind: str, tracker: Path, writers: int, each: int) -> tuple[float, list[float]]:
    start = tracker.parent / f"start-{kind}-{writers}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, kind, str(tracker), f"w{n}", str(each), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # "waiting for the lock" notes: shown only on failure
            text=True,
            env=ENV,
        )
        for n in range(writers)
    ]
    time.sleep(1.0 + 0.1 * writers)  # let every writer import before the start
    began = time.perf_counter()
    start.touch()
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - began
    for proc, (_, err) in zip(procs, outs, strict=True):
        if proc.returncode:
            raise SystemExit(f"a {kind} writer failed: {err}")
    took = [t for out, _ in outs for t in json.loads(out)]
    return len(took) / wall, took


def start_times(commands: list[list[str]], cwd: Path, runs: int) -> list[tuple[float, float]]:
    """Median wall and CPU (user + sys, its children included) seconds of each command,
    run in turns so that a busy moment of the machine weighs on all of them alike."""
    walls: list[list[float]] = [[] for _ in commands]
    cpus: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for n, argv in enumerate(commands):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.perf_counter()
            subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, check=True)
            walls[n].append(time.perf_counter() - began)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[n].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus, strict=True)]


def cpu_pressure() -> str:
    """How often runnable tasks waited for a CPU over the last minute (Linux PSI)."""
    try:
        line = Path("/proc/pressure/cpu").read_text(encoding="utf-8").splitlines()[0]
    except OSError:
        return "n/a"
    return line.split()[2].split("=")[1] + "%"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    quick = "--quick" in sys.argv
    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="orchestree-bench-") as tmp:
        base = Path(tmp)
        lane_ids = [f"lane-{n:02d}" for n in range(24)]

        def store_24(name: str) -> TrackerStore:
            store = fresh_store(base / name, 0)

            def add(tracker: Tracker) -> None:
                for n, lane_id in enumerate(lane_ids):
                    tracker.lanes[lane_id] = Lane(tasks=[f"task {n}"], order=n, status="running")

            store.update(add, "add-lane", lanes=lane_ids)
            return store

        count = 200 if quick else 600
        store = store_24("inproc-store")
        payload = store.path.read_bytes()
        raw = raw_durable_writes(base / "inproc-store", payload, count)
        rate, took = in_process(store.merge, count)
        rows.append(
            (
                "1 in-process writer, TrackerStore.merge (24 lanes)",
                f"{rate:.0f} updates/s, p50 {ms(percentile(took, 50))}",
                f"{raw:.0f} bare durable writes/s",
                f"{rate / raw:.2f}",
                ">= 500 updates/s",
            )
        )
        helper = store_24("inproc-helper")
        rate, took = in_process(lambda c: access_tracker.update(str(helper.path), c), count)
        rows.append(
            (
                "1 in-process writer, access_tracker.update (24 lanes)",
                f"{rate:.0f} updates/s, p50 {ms(percentile(took, 50))}",
                f"{raw:.0f} bare durable writes/s",
                f"{rate / raw:.2f}",
                ">= 500 updates/s",
            )
        )
        for writers in (1, 4, 16):
            each = max(20, (150 if quick else 480) // writers)
            results = {}
            for kind in ("bare", "store", "helper"):
                target = store_24(f"{kind}-{writers}")
                results[kind] = processes(kind, target.path, writers, each)
                TrackerStore(target.path).read()  # still valid after the storm
            bare_rate, bare_took = results["bare"]
            for kind in ("store", "helper"):
                rate, took = results[kind]
                rows.append(
                    (
                        f"{writers} writer process(es), {kind} ({writers}x{each} updates)",
                        f"{rate:.0f} updates/s; p50 {ms(percentile(took, 50))}, "
                        f"p99 {ms(percentile(took, 99))}",
                        f"bare: {bare_rate:.0f}/s; p50 {ms(percentile(bare_took, 50))}, "
                        f"p99 {ms(percentile(bare_took, 99))}",
                        f"p99 {percentile(took, 99) / percentile(bare_took, 99):.2f}",
                        "p99 < 100 ms" if writers == 16 else "",
                    )
                )

        big = fresh_store(base / "big", 500)
        size = big.path.stat().st_size
        rows.append(
            (
                "500-lane tracker size (500 agents too)",
                f"{size / 1024:.0f} KiB",
                "1024 KiB",
                f"{size / 1024 / 1024:.2f}",
                "< 1 MiB",
            )
        )
        rate, took = in_process(big.merge, 30 if quick else 100, width=3)
        rows.append(
            (
                "1 in-process writer on the 500-lane tracker",
                f"{rate:.0f} updates/s, p50 {ms(percentile(took, 50))}",
                "",
                "",
                "",
            )
        )

        repo = base / "repo"
        repo.mkdir()
        for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "x"]):
            subprocess.run(["git", *args], cwd=repo, env=ENV, check=True)
        subprocess.run([ORCHESTREE, "init"], cwd=repo, env=ENV, check=True, capture_output=True)
        runs = 5 if quick else 11
        typer_only = [sys.executable, "-c", "import typer"]
        start_times([typer_only], repo, 2)  # warm the caches
        (bare, bare_cpu), (status, status_cpu), (table, table_cpu) = start_times(
            [typer_only, [ORCHESTREE, "status", "--json"], [ORCHESTREE, "status"]], repo, runs
        )
        for figure, wall, cpu, target in (
            ("`orchestree status --json`", status, status_cpu, "<= 1.5x"),
            ("`orchestree status` (table)", table, table_cpu, ""),
        ):
            rows.append(
                (
                    f"{figure} start, median of {runs}: wall (CPU)",
                    f"{ms(wall)} ({ms(cpu)})",
                    f"`python -c 'import typer'`: {ms(bare)} ({ms(bare_cpu)})",
                    f"{wall / bare:.2f} ({cpu / bare_cpu:.2f})",
                    target,
                )
            )

        rows.append(
            (
                "machine: load average, CPU pressure (PSI some avg60)",
                f"{os.getloadavg()[1]:.1f} on {os.cpu_count()} cores, {cpu_pressure()}",
                "",
                "",
                "",
            )
        )

    print("| figure | measured | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(cell or "-" for cell in row) + " |")
    for figure, measured, baseline, ratio, target in rows:
        if target:
            met = _met(ratio if target.endswith("x") else measured, target)
            first = re.findall(r"(?<![a-z0-9.])[0-9.]+", ratio)  # not the 99 of "p99"
            shown = float(first[0]) if first else None
            emit("tracker_bench.py", figure, measured, baseline, shown, target, met)


def _met(measured: str, target: str) -> bool:
    """Read the target's own number from the measured text (the first number in it, or
    the p99 one for latency targets)."""
    numbers = re.findall(r"[0-9.]+", target)
    limit = float(numbers[-1]) if numbers else 0.0
    if target.startswith("p99"):
        value = float(re.search(r"p99 ([0-9.]+)", measured).group(1))  # type: ignore[union-attr]
        return value < limit
    value = float(re.findall(r"[0-9.]+", measured)[0])
    if "KiB" in measured:
        return value / 1024 < limit
    if target.startswith(">="):
        return value >= limit
    return value <= limit


if __name__ == "__main__":
    main()
