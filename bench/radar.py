"""Benchmark: one conflict radar pass over 50 lanes with 10 overlapping pairs.

Half the lanes are running with their work only in their worktrees (uncommitted), half
completed with a commit; lanes 2k and 2k+1 (k < 10) change the same line of one file,
the other 30 add files of their own. The radar reads the running lanes' files as trees,
diffs every lane against its start, and runs `git merge-tree` only on pairs whose
changed paths overlap. Next to it, in the same run: `git merge-tree --write-tree` on
the same 10 pairs (the merges no radar can avoid), and on every pair and every lane
against the base (the 1 275 merges a radar without the overlap filter would run).
Wall-clock medians over REPEATS passes; the radar uses its thread pool as in execute.

Run: .venv/bin/python bench/radar.py [--lanes 50] [--pairs 10] [--files 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

from _rows import emit

IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@orchestree.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@orchestree.invalid",
}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(("git", *args), cwd=cwd, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def build(root: Path, lanes: int, pairs: int, files: int) -> list[str]:
    """The repository, its lanes' worktrees and the tracker; returns the lane ids."""
    from orchestree import lane_ops
    from orchestree.models import Tracker
    from orchestree.repo import init_repo

    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for i in range(files):
        folder = root / f"pkg{i % 20}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod{i}.py").write_text("".join(f"VALUE_{k} = {i}\n" for k in range(40)))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    base = git(root, "rev-parse", "main")
    repo = init_repo(root).repo
    ids = [f"lane{i:02d}" for i in range(lanes)]
    lane_ops.add_lanes(repo, {i: {"tasks": [f"work {i}"]} for i in ids})
    for n, lane_id in enumerate(ids):
        path = repo.layout.worktree(lane_id)
        git(root, "worktree", "add", "-q", "-b", f"lane-{lane_id}", str(path), base)
        if n < 2 * pairs:  # lanes 2k and 2k+1 change line 5 of pkg0/mod{k}.py
            target = path / f"pkg{(n // 2) % 20}" / f"mod{n // 2}.py"
            rows = target.read_text().splitlines(keepends=True)
            rows[5] = f"VALUE_5 = 'lane {lane_id}'\n"
            target.write_text("".join(rows))
        else:
            (path / f"{lane_id}.txt").write_text(f"work of {lane_id}\n")
        if n % 2:  # completed: committed; the others stay running, uncommitted
            git(path, "add", "-A")
            git(path, "commit", "-q", "-m", f"work of {lane_id}")

    def change(tracker: Tracker) -> None:
        for lane_id in ids:
            lane = tracker.lanes[lane_id]
            lane.status = "running"
            lane.start_commit = base

    def finish(tracker: Tracker) -> None:
        for n, lane_id in enumerate(ids):
            if n % 2:
                tracker.lanes[lane_id].status = "completed"

    repo.store.update(change, "bench")
    repo.store.update(finish, "bench")
    return ids


def merge_trees(root: Path, pairs: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    for ours, theirs in pairs:
        subprocess.run(["git", "merge-tree", "--write-tree", "--name-only", ours, theirs],
                       cwd=root, capture_output=True, check=False)  # fmt: skip
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(IDENTITY)
    from orchestree.merge import radar
    from orchestree.repo import open_repo

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        build(root, args.lanes, args.pairs, args.files)
        repo = open_repo(root)
        tracker = repo.store.read()
        passes, flagged, every = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            found = radar.scan(repo.layout, tracker)
            passes.append(time.perf_counter() - start)
            assert len(found.findings) == args.pairs, found.findings
            assert found.merges == args.pairs, found.merges
            commits = {w.lane_id: w.commit for w in found.works}
            pairs = [(commits[f.lanes[0]], commits[f.lanes[1]]) for f in found.findings]
            flagged.append(merge_trees(root, pairs))
            base = git(root, "rev-parse", "main")
            naive = list(combinations(commits.values(), 2)) + [(base, c) for c in commits.values()]
            every.append(merge_trees(root, naive))
    seconds = statistics.median(passes)
    ten, allpairs = statistics.median(flagged), statistics.median(every)
    running = sum(w.working for w in found.works)
    print(
        f"{args.lanes} lanes ({running} running with uncommitted work), {args.pairs} "
        f"overlapping pairs, {args.files} files, {os.cpu_count()} cores; median of "
        f"{args.repeats}"
    )
    print()
    print("| what | seconds |")
    print("|---|---:|")
    print(f"| one radar pass (trees of running lanes, diffs, {found.merges} merge-trees) "
          f"| {seconds:.2f} |")  # fmt: skip
    print(f"| `git merge-tree` on the same {args.pairs} pairs | {ten:.2f} |")
    print(f"| `git merge-tree` on all {len(naive)} pairs and lane-vs-base | {allpairs:.2f} |")
    emit("radar.py", f"one radar pass, {args.lanes} lanes, {args.pairs} overlapping pairs",
         f"{seconds:.2f} s", f"{allpairs:.2f} s (merge-tree on all {len(naive)} pairs); "
         f"{ten:.2f} s (merge-tree on the {args.pairs} pairs)", seconds / allpairs,
         "≤ 1.0 of all pairs; ≤ 5 s", seconds <= allpairs and seconds <= 5.0)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
