"""`orchestree monitor`: the console view and the web dashboard (DESIGN.md §9).

Both only read the tracker, without a lock, and render one pure snapshot of it
(`snapshot.build_snapshot`). Rich, Starlette and uvicorn are imported here, inside
the function, so that other commands never pay for them.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from orchestree.config import load_config
from orchestree.errors import UserError
from orchestree.layout import Layout


def run_monitor(
    root: Path,
    *,
    web: bool,
    once: bool,
    interval: float,
    host: str | None,
    port: int | None,
) -> int:
    """Show the orchestration of the repository at `root`; returns the exit code.

    Console: a live view refreshed every `interval` seconds (`q` or Ctrl-C quits), one
    frame with `once`, plain text without a TTY. Web: serve the dashboard on
    `host:port` (None: `[monitor]` in orchestree.toml, default 127.0.0.1:5555) until
    Ctrl-C; the dashboard polls every second whatever `interval` says. Raises
    `UserError` for bad options, `EnvironmentRefused` when the port is
    taken and `TrackerError` when `once` finds no readable tracker.
    """
    if interval <= 0:
        raise UserError(f"--interval must be above 0 seconds (got {interval})")
    config = load_config(root)
    timeout_s = config.defaults.timeout_s
    if not web:
        if host is not None or port is not None:
            raise UserError("--host and --port only apply to --web; add --web")
        from orchestree.monitor.console import run_console

        return run_console(
            Layout(root).tracker, once=once, interval=interval, default_timeout_s=timeout_s
        )
    if once:
        raise UserError("--once applies to the console monitor; drop --once or --web")

    from orchestree.monitor.web import is_loopback, make_app, make_server, open_socket

    host = host if host is not None else config.monitor.host
    port = port if port is not None else config.monitor.port
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535 (got {port})")
    sock = open_socket(host, port)
    if not is_loopback(host):
        print(
            f"warning: the monitor on {host}:{port} is reachable from other machines and "
            "has no login; it shows lane tasks, progress and logs",
            file=sys.stderr,
        )
    app = make_app(
        root,
        host=host,
        port=port,
        default_timeout_s=timeout_s,
        worktree_root=config.worktree.root,
    )
    shown = f"[{host}]" if ":" in host else host
    print(f"orchestree monitor: http://{shown}:{port}/ (Ctrl-C to stop)", file=sys.stderr)
    # uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal it caught.
    with contextlib.suppress(KeyboardInterrupt):
        make_server(app).run(sockets=[sock])
    return 0
