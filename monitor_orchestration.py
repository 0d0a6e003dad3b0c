#!/usr/bin/env python3
"""The seed's monitor entry point, kept for its users.

    python3 monitor_orchestration.py                 # live console view
    python3 monitor_orchestration.py --once          # one frame
    python3 monitor_orchestration.py --web           # dashboard on http://127.0.0.1:5555

runs `orchestree monitor` with the same flags on the repository you stand in.
Standard library only, so it runs with any python3.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys


def command(argv: list[str]) -> list[str] | None:
    """`orchestree monitor ARGV...`: the `orchestree` on PATH, else this Python's module."""
    found = shutil.which("orchestree")
    if found:
        return [found, "monitor", *argv]
    if importlib.util.find_spec("orchestree") is not None:
        return [sys.executable, "-m", "orchestree", "monitor", *argv]
    return None


def main(argv: list[str]) -> int:
    cmd = command(argv)
    if cmd is None:
        print(
            "monitor_orchestration.py: orchestree is not installed; install it with "
            "`pip install orchestree` (or `pip install -e .` in its checkout)",
            file=sys.stderr,
        )
        return 3
    # Become the monitor: the terminal, Ctrl-C and `q` reach it directly.
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
