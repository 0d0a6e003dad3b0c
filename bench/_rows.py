"""One row of docs/benchmarks.md. Each bench prints its own table and calls `emit` for
every figure with a target; `bench/run_all.py` sets ORCHESTREE_BENCH_ROWS and gathers
the rows into one table."""

from __future__ import annotations

import json
import os


def emit(
    bench: str,
    figure: str,
    value: str,
    baseline: str,
    ratio: float | None,
    target: str,
    met: bool | None,  # None: a figure shown for context, with no target
) -> None:
    path = os.environ.get("ORCHESTREE_BENCH_ROWS")
    if not path:
        return
    row = {"bench": bench, "figure": figure, "value": value, "baseline": baseline,
           "ratio": ratio, "target": target, "met": met}  # fmt: skip
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
