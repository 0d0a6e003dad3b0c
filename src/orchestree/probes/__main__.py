"""`python -m orchestree.probes <builtin> --root . --out DIR --probe-id ID [--command CMD]`.

The runner launches this inside a probe's worktree. Exit 0 with `state_probe.json`
and `state_probe.md` in DIR; 1 with one line on stderr when the probe failed; 2 for
bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestree.errors import OrchestreeError, UserError
from orchestree.models import check_lane_id
from orchestree.probes import BUILTIN_PROBES, ProbeOptions, run_builtin, write_probe_output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestree.probes", description="Run one built-in probe."
    )
    parser.add_argument("builtin", choices=sorted(BUILTIN_PROBES))
    parser.add_argument("--root", type=Path, default=Path("."), help="repository to analyse")
    parser.add_argument("--out", type=Path, help="folder for state_probe.json/.md")
    parser.add_argument("--probe-id", help="the probe's id (default: the built-in's name)")
    parser.add_argument("--command", help="the command to run (tests, lint)")
    parser.add_argument("--timeout-s", type=float, default=1200.0, help="limit for a command")
    parser.add_argument("--debug", action="store_true", help="a traceback for unexpected errors")
    args = parser.parse_args(argv)
    probe_id = args.probe_id or args.builtin
    try:
        check_lane_id(probe_id)
        if args.timeout_s <= 0:
            raise UserError(f"--timeout-s must be positive, not {args.timeout_s:g}")
    except UserError as exc:
        print(f"probe {probe_id}: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("docs/_generated") / probe_id
    options = ProbeOptions(probe_id=probe_id, command=args.command, timeout_s=args.timeout_s)
    try:
        root = args.root.resolve(strict=True)
        result = run_builtin(args.builtin, root, options)
        write_probe_output(out, result)
    except (OrchestreeError, OSError) as exc:
        print(f"probe {probe_id} ({args.builtin}) failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"probe {probe_id} ({args.builtin}) failed: a bug in orchestree "
            f"({type(exc).__name__}: {exc}); rerun with --debug for the traceback",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
