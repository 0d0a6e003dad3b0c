"""The chaos suite (tests/chaos/test_chaos.py) runs under `make chaos` only
(ORCHESTREE_CHAOS_TESTS=1): 50 seeded runs take minutes. The harness's own test
(test_chaos_harness.py) runs with every `make test`."""

from __future__ import annotations

import os

import pytest

CHAOS_TESTS = os.environ.get("ORCHESTREE_CHAOS_TESTS") == "1"
collect_ignore = [] if CHAOS_TESTS else ["test_chaos.py"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CHAOS_TESTS:
        terminalreporter.write_line(
            "tests/chaos/test_chaos.py (seeded fault runs) not run: run `make chaos`"
        )
        return
    from chaos_run import TALLY

    if not TALLY:
        return
    write = terminalreporter.write_line
    struck: dict[str, int] = {}
    for run in TALLY:
        for kind in run["injected"]:
            struck[kind] = struck.get(kind, 0) + 1
    write(f"chaos: {len(TALLY)} runs; faults struck: "
          + ", ".join(f"{k} x{n}" for k, n in sorted(struck.items())))  # fmt: skip
    for run in TALLY:
        if run["missed"]:
            write(f"chaos: seed {run['seed']} [{run['scenario']}] missed: {run['missed']}")
    for run in TALLY:
        if run["violated"]:
            write(f"chaos: seed {run['seed']} [{run['scenario']}] violated: "
                  f"{', '.join(run['violated'])}")  # fmt: skip
