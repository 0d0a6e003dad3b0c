"""What `[sandbox] kind = "bwrap"` costs a lane's start, against no sandbox.

The same N no-op lanes run by `orchestree execute`, with and without the sandbox,
interleaved; the cost per lane is the difference of the medians over N. Also the
bare price of the wrapper: `bwrap ... true` against `true`, median of 50.

    python bench/sandbox_cost.py [--lanes 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rows import emit
from _setup import IDENTITY, ORCHESTREE

TARGET_MS = 100.0
BWRAP = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL",
         "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]  # fmt: skip


def run(lanes: int, kind: str) -> float:
    env = {**os.environ, **IDENTITY}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        config = f'[defaults]\nagent = "shell"\nmax_parallel = 4\n[sandbox]\nkind = "{kind}"\n'
        (repo / "orchestree.toml").write_text(config, encoding="utf-8")
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
            subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
        spec = Path(tmp) / "lanes.json"
        body = ",".join(f'"l{n}": {{"tasks": ["echo {n} > out.txt"]}}' for n in range(lanes))
        spec.write_text("{" + body + "}", encoding="utf-8")
        for args in (["init"], ["add-lane", "--from", str(spec)]):
            subprocess.run([ORCHESTREE, *args, "--repo", str(repo)], env=env, check=True,
                           capture_output=True)  # fmt: skip
        began = time.perf_counter()
        subprocess.run([ORCHESTREE, "execute", "--repo", str(repo)], env=env, check=True,
                       capture_output=True)  # fmt: skip
        return time.perf_counter() - began


def bare(argv: list[str], times: int = 50) -> float:
    seen = []
    for _ in range(times):
        began = time.perf_counter()
        subprocess.run(argv, check=True)
        seen.append(time.perf_counter() - began)
    return statistics.median(seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"none": [], "bwrap": []}
    for _ in range(args.repeat):
        for kind, values in times.items():
            values.append(run(args.lanes, kind))
    med = {kind: statistics.median(values) for kind, values in times.items()}
    per_lane_ms = (med["bwrap"] - med["none"]) / args.lanes * 1000
    plain, boxed = bare(["true"]), bare([*BWRAP, "true"])
    print(f"| {args.lanes} no-op lanes, max_parallel 4 | execute |")
    print("|---|---:|")
    print(f"| no sandbox | {med['none']:.2f} s |")
    print(f"| bwrap | {med['bwrap']:.2f} s ({per_lane_ms:+.0f} ms a lane) |")
    print(f"| `true` / `bwrap ... true` | {plain * 1000:.1f} ms / {boxed * 1000:.1f} ms |")
    emit("sandbox_cost.py", f"sandbox cost a lane start, {args.lanes} no-op lanes",
         f"{per_lane_ms:.0f} ms ({med['bwrap']:.2f} s in all)", f"{med['none']:.2f} s (no sandbox)",
         med["bwrap"] / med["none"], f"≤ {TARGET_MS:.0f} ms a lane",
         per_lane_ms <= TARGET_MS)  # fmt: skip
    emit("sandbox_cost.py", "`bwrap ... true` against `true`", f"{boxed * 1000:.1f} ms",
         f"{plain * 1000:.1f} ms", boxed / plain, "", None)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
