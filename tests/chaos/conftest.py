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
