"""Benchmark: `orchestree merge` of 50 completed lanes against a shell loop of `git merge`.

Each lane is one commit adding its own file to a repository of FILES files. The
baseline runs `git merge --no-ff` once per lane branch in a copy of the base worktree
(what a script without orchestree does); orchestree computes every merge in memory
and writes the working tree once. `merge --check` does the same computation without
publishing. Times are wall-clock medians over REPEATS fresh copies, CLI start included.

Run: .venv/bin/python bench/merge.py [--lanes 50] [--files 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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


def build(root: Path, lanes: int, files: int) -> None:
    """A repository with `files` files and `lanes` completed lanes, one commit each."""
    from orchestree import lane_ops
    from orchestree.models import Tracker
    from orchestree.repo import init_repo

    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for i in range(files):
        folder = root / f"pkg{i % 20}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod{i}.py").write_text(f"VALUE = {i}\n" * 20)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    repo = init_repo(root).repo
    ids = [f"lane{i:02d}" for i in range(lanes)]
    lane_ops.add_lanes(repo, {i: {"tasks": [f"write {i}.txt"]} for i in ids})
    base_tree = git(root, "rev-parse", "main^{tree}")
    base = git(root, "rev-parse", "main")
    for lane_id in ids:
        blob = git(root, "hash-object", "-w", "--stdin", stdin=f"work of {lane_id}\n")
        entries = git(root, "ls-tree", base_tree)
        tree = git(root, "mktree", stdin=f"{entries}\n100644 blob {blob}\t{lane_id}.txt\n")
        head = git(root, "commit-tree", tree, "-p", base, "-m", f"work of {lane_id}")
        git(root, "branch", f"lane-{lane_id}", head)

    def set_all(status: str) -> None:
        def change(tracker: Tracker) -> None:
            for lane_id in ids:
                tracker.lanes[lane_id].status = status  # type: ignore[assignment]

        repo.store.update(change, "bench")

    set_all("running")
    set_all("completed")


def timed(cmd: list[str], cwd: Path, shell: bool = False) -> float:
    start = time.perf_counter()
    subprocess.run(cmd[0] if shell else cmd, cwd=cwd, shell=shell, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=50)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(IDENTITY)
    orchestree = [sys.executable, "-m", "orchestree"]
    loop = (
        "for b in $(git for-each-ref --format='%(refname:short)' 'refs/heads/lane-*'); "
        'do git merge --no-ff -q -m "Merge $b" "$b" || exit 1; done'
    )
    times: dict[str, list[float]] = {"loop": [], "merge": [], "check": []}
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        build(template, args.lanes, args.files)
        for n in range(args.repeats):
            work = Path(tmp) / f"run{n}"
            shutil.copytree(template, work / "a", symlinks=True)
            shutil.copytree(template, work / "b", symlinks=True)
            for copy in ("a", "b"):  # copies have new inodes: refresh the index first
                git(work / copy, "update-index", "-q", "--refresh")
            times["loop"].append(timed([loop], work / "a", shell=True))
            times["check"].append(timed([*orchestree, "merge", "--check"], work / "b"))
            times["merge"].append(timed([*orchestree, "merge"], work / "b"))
            merged = git(work / "b", "rev-list", "--count", "--merges", "main")
            assert merged == str(args.lanes), f"orchestree merged {merged} lanes"
            assert git(work / "b", "status", "--porcelain", "--untracked-files=no") == ""
    base = statistics.median(times["loop"])
    rows = [
        (f"shell loop: `git merge --no-ff` x{args.lanes}", base),
        ("`orchestree merge`", statistics.median(times["merge"])),
        ("`orchestree merge --check`", statistics.median(times["check"])),
    ]
    version = git(Path.cwd(), "version").split()[-1]
    print(
        f"{args.lanes} completed lanes, one commit each; repository of {args.files} files; "
        f"median of {args.repeats}; git {version}"
    )
    print()
    print("| what | seconds | ratio to the shell loop |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / base:.2f} |")
    for name, seconds in rows[1:]:
        ratio = seconds / base
        emit("merge.py", f"{name}, {args.lanes} lanes", f"{seconds:.2f} s",
             f"{base:.2f} s (`git merge --no-ff` loop)", ratio, "≤ 1.0", ratio <= 1.0)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
