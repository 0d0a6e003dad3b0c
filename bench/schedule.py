"""How close `orchestree execute` gets to the best possible schedule of a DAG.

30 lanes whose agents only sleep: a critical chain of 5 lanes x 2 s, and 25 side
lanes of 1 s in 5 chains of 5. The lower bound on the makespan is the larger of the
critical path and total work / max_parallel; the figure is makespan / lower bound
(every orchestree cost included: CLI start, worktrees, supervisors, commits).

    python bench/schedule.py [--max-parallel 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rows import emit
from _setup import IDENTITY, ORCHESTREE

TARGET = 1.10


def dag() -> dict[str, tuple[float, list[str]]]:
    """lane -> (seconds of work, dependencies)."""
    lanes: dict[str, tuple[float, list[str]]] = {}
    for i in range(5):
        lanes[f"crit-{i}"] = (2.0, [f"crit-{i - 1}"] if i else [])
    for i in range(25):
        lanes[f"side-{i}"] = (1.0, [f"side-{i - 5}"] if i >= 5 else [])
    return lanes


def critical_path(lanes: dict[str, tuple[float, list[str]]]) -> float:
    finish: dict[str, float] = {}

    def done(lane_id: str) -> float:
        if lane_id not in finish:
            work, deps = lanes[lane_id]
            finish[lane_id] = work + max((done(d) for d in deps), default=0.0)
        return finish[lane_id]

    return max(done(lane_id) for lane_id in lanes)


def makespan(lanes: dict[str, tuple[float, list[str]]], max_parallel: int) -> float:
    env = {**os.environ, **IDENTITY}
    with tempfile.TemporaryDirectory(prefix="bench-schedule-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "README.md").write_text("bench\n", encoding="utf-8")
        (repo / "orchestree.toml").write_text(
            f'[defaults]\nagent = "shell"\nmax_parallel = {max_parallel}\n', encoding="utf-8"
        )
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "i"]):
            subprocess.run(["git", *args], cwd=repo, check=True, env=env)
        subprocess.run([ORCHESTREE, "init"], cwd=repo, check=True, env=env, capture_output=True)
        spec = {
            lane_id: {"tasks": [f"sleep {work}"], "depends_on": deps}
            for lane_id, (work, deps) in lanes.items()
        }
        path = Path(tmp) / "lanes.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        subprocess.run(
            [ORCHESTREE, "add-lane", "--from", str(path)],
            cwd=repo, check=True, env=env, capture_output=True,
        )  # fmt: skip
        started = time.perf_counter()
        subprocess.run([ORCHESTREE, "execute"], cwd=repo, check=True, env=env, capture_output=True)
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-parallel", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lanes = dag()
    cp = critical_path(lanes)
    work = sum(w for w, _ in lanes.values())
    bound = max(cp, work / args.max_parallel)
    runs = [makespan(lanes, args.max_parallel) for _ in range(args.repeat)]
    span = statistics.median(runs)
    ratio = span / bound
    mark = "ok" if ratio <= TARGET else "MISSED"
    print(
        f"schedule: {len(lanes)} sleeping lanes, critical path {cp:g} s, total work {work:g} s, "
        f"max_parallel {args.max_parallel}, median of {args.repeat}\n"
    )
    print("| figure | makespan (s) | lower bound (s) | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| DAG of {len(lanes)} lanes | {span:.2f} | {bound:.2f} | {ratio:.3f} | "
        f"≤ {TARGET:.2f} ({mark}) |"
    )
    emit("schedule.py", f"makespan, DAG of {len(lanes)} sleeping lanes", f"{span:.2f} s",
         f"{bound:.2f} s (lower bound)", ratio, f"≤ {TARGET:.2f}", ratio <= TARGET)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
