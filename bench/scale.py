"""Scale-out benchmark: the same 16 lanes locally and on a Dask LocalCluster.

    python bench/scale.py [--lanes 16] [--work 2] [--workers 2]

Each lane's agent works `--work` seconds (`sleep`) and writes one file. Local runs
with max_parallel = workers; Dask on a LocalCluster of `workers` processes, cloning
from a bare remote. Prints a markdown table: wall times, their ratio (target <= 1.15)
and the remote lanes' mean seconds per step (clone, checkout, claim, agent, commit,
push), read from the lane-end events in .orchestration/events.jsonl. Not a test.
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
from datetime import datetime
from pathlib import Path

from _rows import emit

STEPS = ("clone", "checkout", "claim", "agent", "commit", "push")


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def orchestree(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "orchestree", args[0], "--repo", str(repo), *args[1:]]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)


def make_repo(root: Path, executor: str, lanes: int, work: float, workers: int) -> Path:
    remote, repo = root / "remote.git", root / "repo"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Bench")
    git(repo, "config", "user.email", "bench@example.invalid")
    for n in range(50):  # a small but not empty tree
        (repo / f"src{n}.txt").write_text(f"file {n}\n" * 20)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "start")
    git(repo, "remote", "add", "origin", str(remote))
    # Dask: one lane queued per worker beside the one it runs, so a worker that
    # finishes starts the next lane at once instead of waiting for the orchestrator.
    parallel = workers * 2 if executor == "dask" else workers
    (repo / "orchestree.toml").write_text(
        f'[defaults]\nagent = "shell"\nmax_parallel = {parallel}\n'
        + (f'[executor]\nkind = "dask"\nworkers = {workers}\n' if executor == "dask" else "")
    )
    with (repo / ".git" / "info" / "exclude").open("a") as fh:
        fh.write("/orchestree.toml\n")
    return repo


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run(
    kind: str, lanes: int, work: float, workers: int
) -> tuple[float, float, list[dict[str, float]]]:
    with tempfile.TemporaryDirectory(prefix=f"orchestree-bench-{kind}-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["HOME"] = str(root)  # a fresh reference cache, as on a new host
        repo = make_repo(root, kind, lanes, work, workers)
        orchestree(repo, env, "init")
        spec = {f"l{n:02d}": {"tasks": [f"sleep {work}", f"echo {n} > out{n}.txt"]}
                for n in range(lanes)}  # fmt: skip
        (root / "lanes.json").write_text(json.dumps(spec))
        orchestree(repo, env, "add-lane", "--from", str(root / "lanes.json"))
        began = time.monotonic()
        proc = orchestree(repo, env, "execute")
        wall = time.monotonic() - began
        if proc.returncode != 0:
            raise SystemExit(f"{kind} execute failed ({proc.returncode}):\n{proc.stderr}")
        lines = (repo / ".orchestration" / "events.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in lines]
        timings = [e["timings"] for e in events if e.get("timings")]
        starts = [_seconds(e["ts"]) for e in events if e.get("event") == "lane-start"]
        ends = [_seconds(e["ts"]) for e in events if e.get("event") == "lane-end"]
        return wall, max(ends) - min(starts), timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--work", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    local, local_span, _ = run("local", args.lanes, args.work, args.workers)
    dask, dask_span, timings = run("dask", args.lanes, args.work, args.workers)
    ideal = args.lanes * args.work / args.workers
    print(f"{args.lanes} lanes, agent works {args.work:g} s, {args.workers} at a time "
          f"(ideal {ideal:.1f} s)\n")  # fmt: skip
    print("| executor | `execute` wall s | first lane start to last lane end, s |")
    print("|---|---|---|")
    for name, wall, span in (
        ("local, max_parallel", local, local_span),
        ("dask, LocalCluster of", dask, dask_span),
    ):
        print(f"| {name} {args.workers} | {wall:.2f} | {span:.2f} |")
    print(f"\nratio dask / local: **{dask / local:.3f}** for the whole `execute` "
          f"(the cluster's start and stop included), **{dask_span / local_span:.3f}** "
          "for the lanes alone (target <= 1.15)\n")  # fmt: skip
    met = dask_span / local_span <= 1.15
    emit("scale.py", f"Dask LocalCluster of {args.workers}, {args.lanes} lanes of "
         f"{args.work:g} s: first start to last end", f"{dask_span:.2f} s",
         f"{local_span:.2f} s (local, max_parallel {args.workers})",
         dask_span / local_span, "≤ 1.15", met)  # fmt: skip
    emit("scale.py", "the same, whole `execute` (cluster start and stop included)",
         f"{dask:.2f} s", f"{local:.2f} s (local)", dask / local, "", None)  # fmt: skip
    print("| remote step | mean s | max s |")
    print("|---|---|---|")
    for step in STEPS:
        values = [t.get(step, 0.0) for t in timings]
        print(f"| {step} | {statistics.mean(values):.3f} | {max(values):.3f} |")
    outside = [sum(t.get(s, 0.0) for s in STEPS if s != "agent") for t in timings]
    print(f"| all but agent | {statistics.mean(outside):.3f} | {max(outside):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
