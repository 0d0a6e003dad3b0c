"""Benchmark: `merge` of 24 lanes with a verify of about 1 s, one lane breaking the tests.

The same repository twice, in the same run: `[merge] batch = 8` (up to 8 lanes per
verify run, a failing run bisected to the lane that breaks it) against `batch = 1`
(verify after each lane, as before batching). Both must end with 23 lanes merged and
the breaking one named `verify_failed`. Reports the verify runs (counted by the verify
command itself) and the wall time of `orchestree merge`, CLI start included.
Target: at most ⌈log2 24⌉ + 2 = 7 verify runs.

Run: .venv/bin/python bench/verify_batch.py [--lanes 24] [--broken 13] [--verify-s 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rows import emit

IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@orchestree.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@orchestree.invalid",
}


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ("git", *args), cwd=cwd, input=stdin, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def build(root: Path, lanes: int, broken: int) -> None:
    """`lanes` completed lanes, each adding its own file; lane `broken` also adds the
    file the verify command refuses."""
    from orchestree import lane_ops
    from orchestree.models import Tracker
    from orchestree.repo import init_repo

    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("bench\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    repo = init_repo(root).repo
    ids = [f"lane{i:02d}" for i in range(lanes)]
    lane_ops.add_lanes(repo, {i: {"tasks": [f"write {i}.txt"]} for i in ids})
    base = git(root, "rev-parse", "main")
    for n, lane_id in enumerate(ids):
        entries = git(root, "ls-tree", "main^{tree}")
        blob = git(root, "hash-object", "-w", "--stdin", stdin=f"work of {lane_id}\n")
        entries += f"\n100644 blob {blob}\t{lane_id}.txt"
        if n == broken:
            bad = git(root, "hash-object", "-w", "--stdin", stdin="breaks the tests\n")
            entries += f"\n100644 blob {bad}\tbroken.txt"
        tree = git(root, "mktree", stdin=entries + "\n")
        head = git(root, "commit-tree", tree, "-p", base, "-m", f"work of {lane_id}")
        git(root, "branch", f"lane-{lane_id}", head)

    def set_all(status: str) -> None:
        def change(tracker: Tracker) -> None:
            for lane_id in ids:
                tracker.lanes[lane_id].status = status  # type: ignore[assignment]

        repo.store.update(change, "bench")

    set_all("running")
    set_all("completed")


def run_merge(root: Path, batch: int, verify_s: float, runs: Path) -> tuple[float, dict]:  # type: ignore[type-arg]
    check = f"echo run >> {runs}; sleep {verify_s}; test ! -e broken.txt"
    (root / "orchestree.toml").write_text(f'[merge]\nbatch = {batch}\nverify = "{check}"\n')
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orchestree", "merge", "--json"], cwd=root,
                          capture_output=True, text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - start
    assert proc.returncode == 1, proc.stderr
    return seconds, json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=24)
    parser.add_argument("--broken", type=int, default=13)
    parser.add_argument("--verify-s", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.update(IDENTITY)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        build(template, args.lanes, args.broken)
        for batch in (8, 1):
            root = Path(tmp) / f"batch{batch}"
            shutil.copytree(template, root, symlinks=True)
            git(root, "update-index", "-q", "--refresh")
            runs = Path(tmp) / f"runs{batch}.log"
            seconds, report = run_merge(root, batch, args.verify_s, runs)
            statuses = [lane["status"] for lane in report["lanes"]]
            broken = [lane["id"] for lane in report["lanes"] if lane["status"] != "merged"]
            assert statuses.count("merged") == args.lanes - 1, statuses
            assert broken == [f"lane{args.broken:02d}"], broken
            counted = len(runs.read_text().splitlines())
            assert counted == report["verify_runs"], (counted, report["verify_runs"])
            results[batch] = (counted, seconds)
    target = math.ceil(math.log2(args.lanes)) + 2
    (runs8, secs8), (runs1, secs1) = results[8], results[1]
    print(f"{args.lanes} lanes, verify ~{args.verify_s:g} s, lane{args.broken:02d} breaks it")
    print()
    print("| batch | verify runs | merged | wall seconds |")
    print("|---|---:|---:|---:|")
    print(f"| 8 (bisection) | {runs8} | {args.lanes - 1} | {secs8:.1f} |")
    print(f"| 1 (one at a time) | {runs1} | {args.lanes - 1} | {secs1:.1f} |")
    emit("verify_batch.py", f"verify runs, {args.lanes} lanes, one breaks, batch 8",
         str(runs8), f"{runs1} (one at a time)", runs8 / runs1, f"≤ {target}",
         runs8 <= target)  # fmt: skip
    emit("verify_batch.py", f"merge wall time, verify ~{args.verify_s:g} s, batch 8",
         f"{secs8:.1f} s", f"{secs1:.1f} s (one at a time)", secs8 / secs1, "≤ 0.5",
         secs8 <= 0.5 * secs1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
