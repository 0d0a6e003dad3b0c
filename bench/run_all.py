"""`make bench`: run every bench/*.py and rewrite docs/benchmarks.md as one table.

Each benchmark compares against a baseline measured in the same run (these machines
are shared and noisy, so only ratios from one run compare). Each row: the figure, its
baseline, the ratio, the target, and whether it was met; the machine is named above.

    python bench/run_all.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
MET = {True: "yes", False: "**no**", None: "—"}
OUT = HERE.parent / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}, {git.stdout.strip()}; load average at the start {load}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="bench file names to run (default: all)")
    args = parser.parse_args()
    benches = sorted(p for p in HERE.glob("*.py") if not p.name.startswith(("_", "run_all")))
    if args.only:
        benches = [p for p in benches if p.name in args.only or p.stem in args.only]
    header = machine()
    rows: list[dict[str, object]] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.jsonl"
        for bench in benches:
            print(f"== {bench.name}", flush=True)
            started = time.perf_counter()
            env = {**os.environ, "ORCHESTREE_BENCH_ROWS": str(rows_file)}
            done = subprocess.run([sys.executable, str(bench)], env=env, check=False)
            print(f"   {time.perf_counter() - started:.0f} s", flush=True)
            if done.returncode != 0:
                failures.append(f"{bench.name} exited {done.returncode}")
        if rows_file.exists():
            rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line]
    lines = [
        "# Benchmarks",
        "",
        f"Made by `make bench` (`python bench/run_all.py`) on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        f"Machine: {header}.",
        "",
        "Every figure is compared with a baseline measured in the same run; the ratio is "
        "figure / baseline (for latency and CPU rows: figure / target). Each bench prints "
        "more detail when run alone: `python bench/<name>.py`.",
        "",
        "| bench | figure | value | baseline | ratio | target | met |",
        "|---|---|---|---|---:|---|---|",
    ]
    for row in rows:
        ratio = row["ratio"]
        shown = f"{ratio:.2f}" if isinstance(ratio, int | float) else "—"
        lines.append(
            f"| {row['bench']} | {row['figure']} | {row['value']} | {row['baseline']} | "
            f"{shown} | {row['target'] or '—'} | {MET[row['met']]} |"
        )
    if failures:
        lines += ["", "Benches that failed: " + "; ".join(failures) + "."]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(rows)} rows)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
