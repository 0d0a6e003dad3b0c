"""Does a lane cost the same at 500 lanes as at 24? (issue 19)

    python bench/lanes_scale.py [--lanes 24 240 500] [--writes 10 100 500] [--cleanup 300]

Three figures, each against a baseline measured in the same run:
- per-lane cost of `execute` + `merge` of no-op lanes (max_parallel 4) at each size,
  against the smallest size (target: the largest at most 1.2x);
- p50 of one tracker write (a lane's progress, `TrackerStore.update`) at each size,
  interleaved, against the smallest (target: the largest at most 3x);
- `status` at the largest size against a bare `python -c "import typer"` (target: at
  most 1.5x), with the number of lines it printed (it should fit one screen);
- `cleanup` of N merged lanes against a raw shell loop of `git worktree remove` +
  `git branch -d` over the same worktrees and branches, made again in the same
  repository (target: at most 1.2x).
Not a test: prints a markdown table and, under `bench/run_all.py`, its rows.
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

from orchestree.models import Agent, Lane, Tracker
from orchestree.tracker import TrackerStore

ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **IDENTITY}
# A no-op agent that writes its own file, so every merge is a real one.
AGENT = ["sh", "-c", "echo $ORCHESTREE_LANE > out_$ORCHESTREE_LANE.txt"]
RAW_CLEANUP = """
set -e
for lane in $LANES; do
  git worktree remove ".worktrees/agent-$lane"
  git branch -q -d "lane-$lane"
done
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True,
                          text=True)  # fmt: skip
    return done.stdout


def orchestree(repo: Path, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([ORCHESTREE, *args, "--repo", str(repo)], env=ENV,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"orchestree {args[0]} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def make_repo(root: Path, lanes: int) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for n in range(50):  # a small but not empty project
        (repo / f"src_{n}.txt").write_text(f"file {n}\n" * 20, encoding="utf-8")
    (repo / "orchestree.toml").write_text(
        f'[defaults]\nagent = "noop"\nmax_parallel = 4\n\n'
        f"[agents.noop]\ncommand = {json.dumps(AGENT)}\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")
    orchestree(repo, "init")
    spec = root / "lanes.json"
    spec.write_text(json.dumps({f"l{n:03d}": {"tasks": ["no-op"]} for n in range(lanes)}))
    orchestree(repo, "add-lane", "--from", str(spec))
    return repo


def execute_merge(lanes: int) -> tuple[float, float]:
    """Seconds of `execute` and of `merge` for `lanes` no-op lanes."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        repo = make_repo(Path(tmp), lanes)
        return orchestree(repo, "execute"), orchestree(repo, "merge")


def cleanup_pair(lanes: int) -> tuple[float, float]:
    """`orchestree cleanup` of `lanes` merged lanes, and the raw loop over the same
    worktrees and branches made again (same commits) in the same repository."""
    with tempfile.TemporaryDirectory(prefix="bench-clean-") as tmp:
        repo = make_repo(Path(tmp), lanes)
        orchestree(repo, "execute")
        orchestree(repo, "merge")
        heads = dict(line.split() for line in git(
            repo, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/lane-*"
        ).splitlines())  # fmt: skip
        ours = orchestree(repo, "cleanup")
        for name, head in heads.items():
            git(repo, "worktree", "add", "-q", "-b", name, f".worktrees/agent-{name[5:]}", head)
        ids = " ".join(name[5:] for name in heads)
        started = time.perf_counter()
        subprocess.run(["bash", "-c", RAW_CLEANUP], cwd=repo, env={**ENV, "LANES": ids},
                       check=True, capture_output=True)  # fmt: skip
        return ours, time.perf_counter() - started


def status_vs_typer(lanes: int, repeat: int = 5) -> tuple[float, float, int]:
    """Median seconds of `orchestree status` at `lanes` pending lanes and of a bare
    `python -c "import typer"`, interleaved; and how many lines status printed."""
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        repo = make_repo(Path(tmp), lanes)
        ours: list[float] = []
        bare: list[float] = []
        lines = 0
        for _ in range(repeat):
            started = time.perf_counter()
            done = subprocess.run([ORCHESTREE, "status", "--repo", str(repo)], env=ENV,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            ours.append(time.perf_counter() - started)
            lines = len(done.stdout.splitlines())
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import typer"], check=True)
            bare.append(time.perf_counter() - started)
        return statistics.median(ours), statistics.median(bare), lines


def tracker(lanes: int, root: Path) -> Tracker:
    t = Tracker(repo=str(root), base_branch="main", base_commit="c" * 40)
    for n in range(lanes):
        lane = f"l{n:03d}"
        t.lanes[lane] = Lane(tasks=[f"echo {n} > out_{n}.txt"], status="merged",
                             head_commit="b" * 40, start_commit="c" * 40,
                             changed_files=[f"out_{n}.txt"], progress="done")  # fmt: skip
        t.agents[f"agent-{lane}"] = Agent(worktree=f".worktrees/agent-{lane}", lane=lane,
                                          branch=f"lane-{lane}", status="completed",
                                          log=f".orchestration/logs/agent-{lane}.log")  # fmt: skip
    return t


def write_p50(sizes: list[int], rounds: int = 15, per_round: int = 4) -> dict[int, float]:
    """p50 ms of one `TrackerStore.update` (a lane's progress) per size, interleaved so
    every size sees the same machine load."""
    times: dict[int, list[float]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
        stores = {}
        for n in sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            stores[n] = TrackerStore(folder / "tracker.json")
            stores[n].create(tracker(n, folder))
            stores[n].read()
        for r in range(rounds):
            for n in sizes:
                for k in range(per_round):
                    lane = f"l{(r * per_round + k) % n:03d}"

                    text = f"round {r} step {k}"

                    def change(t: Tracker, lane: str = lane, text: str = text) -> None:
                        t.lanes[lane].progress = text

                    started = time.perf_counter()
                    stores[n].update(change, "progress", lane=lane)
                    times[n].append(time.perf_counter() - started)
    return {n: statistics.median(v) * 1000 for n, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, nargs="+", default=[24, 240, 500])
    parser.add_argument("--writes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--cleanup", type=int, default=300)
    args = parser.parse_args()
    print("| figure | value | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    p50 = write_p50(args.writes)
    small = min(args.writes)
    for n in sorted(args.writes):
        ratio = p50[n] / p50[small]
        last = n == max(args.writes)
        print(f"| tracker write p50, {n} lanes | {p50[n]:.2f} ms | {p50[small]:.2f} ms "
              f"({small} lanes) | {ratio:.2f} | {'≤ 3' if last else ''} |")  # fmt: skip
        emit("lanes_scale.py", f"tracker write p50, {n} lanes", f"{p50[n]:.2f} ms",
             f"{p50[small]:.2f} ms ({small} lanes)", ratio, "≤ 3.00" if last else "",
             ratio <= 3 if last else None)  # fmt: skip
    ours, bare, lines = status_vs_typer(max(args.lanes))
    ratio = ours / bare
    print(f"| `status` at {max(args.lanes)} lanes ({lines} lines) | {ours:.2f} s | {bare:.2f} s "
          f"(`import typer`) | {ratio:.2f} | ≤ 1.5 |", flush=True)  # fmt: skip
    emit("lanes_scale.py", f"`status` at {max(args.lanes)} lanes ({lines} lines)",
         f"{ours:.2f} s", f"{bare:.2f} s (python -c 'import typer')", ratio, "≤ 1.50",
         ratio <= 1.5)  # fmt: skip
    per_lane: dict[int, float] = {}
    for n in sorted(args.lanes):
        run, merge = execute_merge(n)
        per_lane[n] = (run + merge) / n
        base = min(per_lane)
        ratio = per_lane[n] / per_lane[base]
        last = n == max(args.lanes)
        print(f"| execute + merge a lane, {n} lanes (execute {run:.1f} s, merge {merge:.1f} s) "
              f"| {per_lane[n] * 1000:.0f} ms | {per_lane[base] * 1000:.0f} ms ({base} lanes) "
              f"| {ratio:.2f} | {'≤ 1.2' if last else ''} |", flush=True)  # fmt: skip
        emit("lanes_scale.py", f"execute + merge, per lane, {n} no-op lanes",
             f"{per_lane[n] * 1000:.0f} ms", f"{per_lane[base] * 1000:.0f} ms ({base} lanes)",
             ratio, "≤ 1.20" if last else "", ratio <= 1.2 if last else None)  # fmt: skip
    ours, raw = cleanup_pair(args.cleanup)
    ratio = ours / raw
    print(f"| cleanup of {args.cleanup} merged lanes | {ours:.2f} s | {raw:.2f} s (raw "
          f"`git worktree remove` + `git branch -d` loop) | {ratio:.2f} | ≤ 1.2 |")  # fmt: skip
    emit("lanes_scale.py", f"`cleanup` of {args.cleanup} merged lanes", f"{ours:.2f} s",
         f"{raw:.2f} s (raw worktree remove + branch -d loop)", ratio, "≤ 1.20",
         ratio <= 1.2)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
