"""What orchestree costs over a plain shell loop doing the same git work.

N no-op lanes (an agent that writes one file) run by `orchestree execute` (then
`orchestree merge`, when this build has it), against a shell loop that does the same
git work one lane at a time: `git worktree add`, the agent, `git add` + `commit`
(then `merge --no-ff` of each lane). Median of 3 runs; prints a markdown table.

    python bench/overhead.py [--lanes 24 96] [--repeat 3] [--max-parallel 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rows import emit
from _setup import IDENTITY, ORCHESTREE

AGENT = "echo done > out.txt"
TARGET = 1.0

LOOP_EXECUTE = """
set -e
for i in $(seq 1 "$N"); do
  git worktree add -q -b "lane-l$i" ".worktrees/agent-l$i" HEAD
  (cd ".worktrees/agent-l$i" && sh -c "$AGENT" && git add -A && git commit -q -m "lane l$i")
done
"""
LOOP_MERGE = """
set -e
for i in $(seq 1 "$N"); do
  git merge -q --no-ff -m "merge lane-l$i" "lane-l$i"
done
"""


def _env() -> dict[str, str]:
    return {**os.environ, **IDENTITY}


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(
        cmd, cwd=cwd, env=env or _env(), check=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    return time.perf_counter() - started


def _repo(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "commit.gpgsign", "false"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=_env())
    for i in range(50):  # a small but not empty project
        (repo / f"src_{i}.txt").write_text(f"file {i}\n" * 20, encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=_env())
    subprocess.run(["git", "commit", "-q", "-m", "initial"], cwd=repo, check=True, env=_env())
    return repo


def has_merge() -> bool:
    proc = subprocess.run([ORCHESTREE, "--help"], capture_output=True, text=True, check=False)
    return any(line.strip().startswith("merge ") for line in proc.stdout.splitlines())


def time_orchestree(n: int, max_parallel: int, merge: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        repo = _repo(Path(tmp))
        (repo / "orchestree.toml").write_text(
            f'[defaults]\nagent = "noop"\nmax_parallel = {max_parallel}\n\n'
            f'[agents.noop]\ncommand = ["sh", "-c", "{AGENT}"]\n',
            encoding="utf-8",
        )
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=_env())
        subprocess.run(["git", "commit", "-q", "-m", "cfg"], cwd=repo, check=True, env=_env())
        _run([ORCHESTREE, "init"], repo)
        lanes = repo.parent / "lanes.json"
        lanes.write_text(json.dumps({f"l{i}": {"tasks": ["noop"]} for i in range(1, n + 1)}))
        _run([ORCHESTREE, "add-lane", "--from", str(lanes)], repo)
        took = _run([ORCHESTREE, "execute"], repo)
        if merge:
            took += _run([ORCHESTREE, "merge"], repo)
        return took


def time_loop(n: int, merge: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        repo = _repo(Path(tmp))
        env = {**_env(), "N": str(n), "AGENT": AGENT}
        took = _run(["bash", "-c", LOOP_EXECUTE], repo, env)
        if merge:
            took += _run(["bash", "-c", LOOP_MERGE], repo, env)
        return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, nargs="+", default=[24, 96])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-parallel", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("git") is None:
        print("git is not on PATH", file=sys.stderr)
        return 3
    merge = has_merge()
    what = "execute + merge" if merge else "execute (merge not in this build)"
    print(f"overhead: {what}, max_parallel {args.max_parallel}, median of {args.repeat}\n")
    print("| figure | orchestree (s) | shell loop (s) | ratio | target |")
    print("|---|---|---|---|---|")
    for n in args.lanes:
        ours: list[float] = []
        loop: list[float] = []
        for _ in range(args.repeat):  # interleaved, so both see the same machine load
            ours.append(time_orchestree(n, args.max_parallel, merge))
            loop.append(time_loop(n, merge))
        mo, ml = statistics.median(ours), statistics.median(loop)
        ratio = mo / ml
        mark = "ok" if ratio <= TARGET else "MISSED"
        print(f"| {n} no-op lanes | {mo:.2f} | {ml:.2f} | {ratio:.2f} | ≤ {TARGET:.2f} ({mark}) |")
        emit("overhead.py", f"{n} no-op lanes, {what}", f"{mo:.2f} s",
             f"{ml:.2f} s (shell loop)", ratio, f"≤ {TARGET:.2f}", ratio <= TARGET)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
