"""How fast each command starts, against `python -c "import typer"` (issue 18).

Every command's `--help`, and the commands a user or a script types most, each run
as the installed `orchestree` executable in a small repository, interleaved with the
baseline so both see the same load. Median of 11, wall and CPU (user + system of the
child). Target: 1.5x the baseline; `execute` and `merge` of an empty tracker 2x.
`monitor --web` and the Dask executor are exempt. The work a command does (its git
calls, its tracker write) is inside its figure.

    python bench/startup.py [--repeat 11]
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

BASELINE = [sys.executable, "-c", "import typer"]
BUDGET = 1.5
RUN_BUDGET = 2.0  # `execute` and `merge` of an empty tracker


def _env() -> dict[str, str]:
    return {**os.environ, **IDENTITY}


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `cmd` (CPU: the child's user + system)."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def make_repo(folder: Path, init: bool) -> Path:
    folder.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "0"]):
        subprocess.run(["git", *args], cwd=folder, env=_env(), check=True)
    if init:
        subprocess.run([ORCHESTREE, "init"], cwd=folder, env=_env(), check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    return folder


def help_commands() -> list[list[str]]:
    """`--help` of the program and of every command, as its own help lists them."""
    out = subprocess.run([ORCHESTREE, "--help"], capture_output=True, text=True, check=True)
    names: list[list[str]] = [[]]
    listing = False
    for line in out.stdout.splitlines():
        if line.strip().lower().startswith("commands"):
            listing = True
        elif listing and line.startswith("  ") and line.strip():
            names.append([line.split()[0]])
    names.append(["tracker", "get"])
    names.append(["tracker", "update"])
    return [[*n, "--help"] for n in names]


def cases(tmp: Path) -> list[tuple[str, list[str], Path, float]]:
    """(label, argv, cwd, budget). `init` gets a fresh repository every run (below)."""
    ready = make_repo(tmp / "ready", init=True)
    lanes = tmp / "lanes.json"
    lanes.write_text(json.dumps({"a": {"tasks": ["t"]}, "b": {"tasks": ["t"]}}), "utf-8")
    empty = make_repo(tmp / "empty", init=True)
    run = [
        ("init", ["init"], tmp, BUDGET),
        ("status --json", ["status", "--json"], ready, BUDGET),
        ("status", ["status"], ready, BUDGET),
        ("add-lane --from (2 lanes)", ["add-lane", "--replace", "--from", str(lanes)], ready,
         BUDGET),
        ("tracker get", ["tracker", "get", "lanes.a.status"], ready, BUDGET),
        ("tracker update", ["tracker", "update", '{"lanes": {"a": {"progress": "1%"}}}'],
         ready, BUDGET),
        ("execute (empty tracker)", ["execute"], empty, RUN_BUDGET),
        ("merge (empty tracker)", ["merge"], empty, RUN_BUDGET),
    ]  # fmt: skip
    helps = [(" ".join(["orchestree", *a]), a, ready, BUDGET) for a in help_commands()]
    return [*helps, *run]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        tmp = Path(folder)
        todo = cases(tmp)
        base: list[tuple[float, float]] = []
        got: dict[str, list[tuple[float, float]]] = {label: [] for label, *_ in todo}
        for i in range(args.repeat):  # interleaved: every round sees the same load
            base.append(timed(BASELINE, tmp))
            for label, argv, cwd, _ in todo:
                fresh = make_repo(tmp / f"fresh-{i}", init=False) if argv == ["init"] else cwd
                got[label].append(timed([ORCHESTREE, *argv], fresh))
        bw = statistics.median(w for w, _ in base)
        bc = statistics.median(c for _, c in base)
        print(f"start-up, median of {args.repeat}; baseline `import typer`: "
              f"{bw * 1000:.0f} ms wall, {bc * 1000:.0f} ms CPU\n")  # fmt: skip
        print("| command | wall (ms) | CPU (ms) | wall ratio | CPU ratio | target |")
        print("|---|---:|---:|---:|---:|---|")
        missed = 0
        for label, _, _, budget in todo:
            w = statistics.median(x for x, _ in got[label])
            c = statistics.median(y for _, y in got[label])
            ok = w / bw <= budget
            missed += not ok
            print(f"| {label} | {w * 1000:.0f} | {c * 1000:.0f} | {w / bw:.2f} | "
                  f"{c / bc:.2f} | ≤ {budget:.1f} ({'ok' if ok else 'MISSED'}) |")  # fmt: skip
            emit("startup.py", f"start-up: {label}",
                 f"{w * 1000:.0f} ms wall, {c * 1000:.0f} ms CPU",
                 f"{bw * 1000:.0f} ms wall, {bc * 1000:.0f} ms CPU (import typer)",
                 w / bw, f"≤ {budget:.1f}", ok)  # fmt: skip
        print(f"\n{missed} of {len(todo)} past their budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
