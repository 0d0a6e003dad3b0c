"""The console monitor: one pure renderer from a snapshot, and a tiny loop around it.

Live mode redraws in the terminal's alternate screen every `interval` seconds and
waits for keys with `select`, so an idle monitor sleeps in the kernel between frames.
Without a TTY it prints a plain-text frame when the tracker changes, which suits a
log file or a pipe.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestree.access_tracker import PHASES
from orchestree.errors import TrackerError
from orchestree.fold import FOLD_LINES, FOLD_MIN
from orchestree.monitor.fields import fmt_duration
from orchestree.monitor.snapshot import Memo
from orchestree.monitor.source import Reading, TrackerReader, snapshot_now
from orchestree.monitor.views import LaneView, Snapshot

STATUS_STYLE = {
    "pending": "dim",
    "running": "bold cyan",
    "completed": "green",
    "merged": "bold green",
    "failed": "bold red",
    "conflict": "bold red",
    "verify_failed": "red",
    "blocked": "yellow",
    "cancelled": "magenta",
    "created": "dim",
}
PLAIN_WIDTH = 120
MAX_WARNINGS = 8


def _bar(label: str, fraction: float, detail: str) -> Table:
    row = Table.grid(padding=(0, 1))
    row.add_column(width=22, no_wrap=True)  # "phase 0/4 initialised"
    row.add_column(width=40)
    row.add_column()
    row.add_row(label, ProgressBar(total=1.0, completed=fraction, width=40), detail)
    return row


def _more(hidden: int, what: str) -> Text:
    return Text(f"… and {hidden} more {what}", style="dim")


def render(snap: Snapshot, notice: str | None = None, height: int | None = None) -> RenderableType:
    """One frame. With `height` (live mode), every line is one screen row and rows are
    cut so the frame fits, keeping what needs a look (it sorts first) and saying how
    many rows are hidden. Without it (`--once`, plain text), everything is shown."""
    fit = height is not None
    st = snap.statistics
    updated = (
        f"  updated {fmt_duration(snap.updated_ago_s)} ago"
        if snap.updated_ago_s is not None
        else ""
    )
    header = Text.assemble(
        ("orchestree ", "bold"),
        snap.repo,
        (f" ({snap.base_branch})" if snap.base_branch else "", "dim"),
        "  status: ",
        (snap.status, STATUS_STYLE.get(snap.status, "bold")),
        updated,
    )
    phase_label = f"phase {snap.phase}/{len(PHASES) - 1} {snap.phase_name}"
    settled = round(snap.completion * st.total)
    counts = Text()
    for status, n in st.by_status.items():
        if n:
            counts.append(f"{status} {n}", STATUS_STYLE.get(status, ""))
            counts.append("  ")
    counts.append(f"time {fmt_duration(st.elapsed_s)}  agent time {fmt_duration(st.agent_time_s)}")
    counts.append(f"  cost ${st.cost_usd:.2f}")
    lines: list[Text] = [header, counts]
    if notice:
        lines.append(Text(f"! {notice}", style="bold yellow"))
    warnings = snap.warnings
    shown = warnings[: max(1, min(MAX_WARNINGS, (height or 0) // 5))] if fit else warnings
    if warnings:
        lines.append(Text(f"Warnings ({len(warnings)})", style="bold red"))
        lines.extend(Text(f"  ! {w.message}", style="red") for w in shown)
        if len(warnings) > len(shown):
            lines.append(_more(len(warnings) - len(shown), "warnings"))
    for line in lines:
        line.no_wrap, line.overflow = fit, "ellipsis"
    if notice:
        lines[2].no_wrap = False  # what went wrong matters more than a lane row

    agent_rows = lane_rows = None
    if height is not None:
        # Each table costs 3 rows (title, header, rule) plus one for "… and N more".
        left = height - len(lines) - 2 - (1 if notice else 0)
        agent_rows = min(len(snap.agents), max(1, left // 4))
        left -= 3 + agent_rows + (len(snap.agents) > agent_rows)
        lane_rows = max(1, left - 4)
    parts: list[RenderableType] = [
        lines[0],
        _bar(phase_label, snap.phase_progress, f"{snap.phase_progress:.0%}"),
        _bar("lanes finished", snap.completion, f"{snap.completion:.0%} ({settled}/{st.total})"),
        *lines[1:],
        _agents_table(snap, agent_rows),
    ]
    if agent_rows is not None and len(snap.agents) > agent_rows:
        parts.append(_more(len(snap.agents) - agent_rows, "agents"))
    parts.append(_LanesTable(snap, lane_rows))
    if lane_rows is not None and len(snap.lanes) > lane_rows:
        parts.append(_more(len(snap.lanes) - lane_rows, "lanes"))
    return Group(*parts)


def _table(title: str, expand: bool) -> Table:
    """A table of the monitor: titled on the left, a rule under the header, no frame,
    so both tables line up with the lines above them."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        expand=expand,
    )


def _agents_table(snap: Snapshot, rows: int | None) -> Table:
    table = _table("Agents  ✓ completed  ✗ failed  → running  ○ created", expand=False)
    for col in ("", "agent", "lane", "pid", "host", "time", "exit"):
        table.add_column(col, no_wrap=True)
    order = {"running": 0, "failed": 1, "created": 2, "completed": 3}
    agents = sorted(snap.agents, key=lambda a: (order.get(a.status, 4), a.name))
    for a in agents[:rows]:
        style = STATUS_STYLE.get(a.status, "")
        table.add_row(
            Text(a.symbol, style=style),
            a.name,
            a.lane,
            str(a.pid or "-"),
            a.host or "-",
            fmt_duration(a.duration_s),
            "-" if a.exit_code is None else str(a.exit_code),
        )
    return table


class _LanesTable:
    """The lanes table, laid out for the width it gets: on a narrow terminal the
    status, lane and progress keep their room and the extra columns go."""

    def __init__(self, snap: Snapshot, rows: int | None) -> None:
        self.snap, self.rows = snap, rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        lanes = self.snap.lanes
        # Cost and host only when some lane has them: the width goes to progress.
        with_cost = width >= 100 and any(lane.cost_usd is not None for lane in lanes)
        with_host = width >= 100 and any(lane.host for lane in lanes)
        with_results = width >= 130
        table = _table("Lanes", expand=True)
        table.add_column("status", no_wrap=True, min_width=13)
        table.add_column("lane", no_wrap=True, max_width=30 if width >= 100 else 20)
        table.add_column("prio", no_wrap=True, min_width=6)
        table.add_column("progress", no_wrap=True, ratio=1)
        table.add_column("try", no_wrap=True)
        table.add_column("time", no_wrap=True, justify="right", min_width=6)
        if with_cost:
            table.add_column("cost", no_wrap=True, justify="right")
        if with_host:
            table.add_column("host", no_wrap=True, max_width=14)
        if with_results:
            table.add_column("results", no_wrap=True, max_width=24)
        for lane in lanes[: self.rows]:
            name = lane.id if lane.name == lane.id else f"{lane.id} · {lane.name}"
            tries = (
                f"{lane.attempts}/{lane.max_attempts}" if lane.max_attempts else str(lane.attempts)
            )
            cells: list[RenderableType] = [
                Text(lane.status, style=STATUS_STYLE.get(lane.status, "")),
                _cell(name),
                lane.priority,
                _cell(lane.progress or lane.error or _waiting(lane)),
                tries,
                fmt_duration(lane.duration_s),
            ]
            if with_cost:
                cells.append("-" if lane.cost_usd is None else f"${lane.cost_usd:.2f}")
            if with_host:
                cells.append(_cell(lane.host or "-"))
            if with_results:
                cells.append(_cell(", ".join(lane.results)))
            table.add_row(*cells)
        yield table


def _cell(text: str) -> Text:
    return Text(text, no_wrap=True, overflow="ellipsis")


@contextlib.contextmanager
def _keys(inp: IO[str]) -> Iterator[int | None]:
    """cbreak mode on a terminal stdin (keys arrive unbuffered, Ctrl-C still works),
    restored on the way out whatever happens; yields the fd to watch, or None."""
    try:
        fd = inp.fileno()
    except (OSError, ValueError):
        yield None
        return
    if not os.isatty(fd):
        yield None
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(fd: int | None, timeout: float) -> tuple[bool, int | None]:
    """Sleep up to `timeout`; (True, fd) when `q` was typed. Stops watching at EOF."""
    if fd is None:
        time.sleep(timeout)
        return False, None
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return False, fd
    data = os.read(fd, 64)
    if not data:
        return False, None  # stdin closed: never select on it again (it stays readable)
    return b"q" in data.lower(), fd


def run_console(
    tracker: Path,
    *,
    once: bool,
    interval: float,
    default_timeout_s: float,
    show_all: bool = False,
    out: IO[str] | None = None,
    inp: IO[str] | None = None,
) -> int:
    """Show the tracker at `tracker` in the terminal; returns the exit code."""
    out = out if out is not None else sys.stdout
    inp = inp if inp is not None else sys.stdin
    reader = TrackerReader(tracker)
    console = Console(file=out, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=out, highlight=False, width=PLAIN_WIDTH)

    if once:
        reading = reader.read()
        if reading.tracker is None:
            raise TrackerError(reading.notice or f"cannot read {tracker}")
        snap = snapshot_now(reading.tracker, default_timeout_s)
        height = console.size.height
        # One screen, as `status`: a frame taller than the screen is cut the way the live
        # view cuts it (what needs a look first) unless --all asks for every row.
        fits = show_all or len(snap.lanes) <= max(FOLD_MIN, height - FOLD_LINES)
        console.print(render(snap, reading.notice, None if fits else height - 2))  # the hint
        if not fits:
            console.print(Text("`orchestree monitor --once --all` shows every row", style="dim"))
        return 0

    try:
        if not console.is_terminal:
            _plain_loop(reader, console, interval, default_timeout_s)
        else:
            _live_loop(reader, console, inp, interval, default_timeout_s)
    except KeyboardInterrupt:
        pass
    return 0


def _frame(
    reading: Reading, default_timeout_s: float, height: int | None, memo: Memo | None = None
) -> RenderableType:
    if reading.tracker is None:
        return Text(f"orchestree monitor\n\n! {reading.notice}", style="bold yellow")
    snap = snapshot_now(reading.tracker, default_timeout_s, memo)
    return render(snap, reading.notice, height)


def _live_loop(
    reader: TrackerReader, console: Console, inp: IO[str], interval: float, timeout_s: float
) -> None:
    # auto_refresh off: Live's own thread would redraw 4x a second for nothing.
    live = Live(
        console=console,
        screen=True,
        auto_refresh=False,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    memo = Memo()
    with _keys(inp) as key_fd, live:
        fd = key_fd
        while True:
            frame = _frame(reader.read(), timeout_s, console.size.height, memo)
            live.update(frame, refresh=True)
            quit_now, fd = _wait_for_quit(fd, interval)
            if quit_now:
                return


def _plain_loop(reader: TrackerReader, console: Console, interval: float, timeout_s: float) -> None:
    first = True
    while True:
        reading = reader.read()
        if reading.changed or first:
            if not first:
                console.print()
            console.print(_frame(reading, timeout_s, None))
            console.file.flush()
            first = False
        time.sleep(interval)


def _waiting(lane: LaneView) -> str:
    """A pending lane says what it waits for: dependencies, a held agent, the run's
    budget or deadline, memory."""
    if lane.waits:
        return f"waits for {lane.waits}"
    return f"waiting for {lane.waiting_for}" if lane.waiting_for else ""
