"""The `status` screen, drawn from the tracker's JSON data with the standard library.

`orchestree status` is the command a user types most, and at 500 lanes too it must
start about as fast as Typer: neither the pydantic models nor Rich are imported to
draw it. It reads what `access_tracker.read_trusted` gives (the tracker orchestree
acts on), with each field's default where an older tracker lacks it.

A table when it fits the terminal: ids, statuses and amounts stay whole, the
dependencies and the progress fold between words, the progress keeps 20 columns. On
a narrower terminal, one line a lane with its text wrapped below. Agent text
(progress, errors) is shown as text: control characters become escapes.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestree import fold
from orchestree.access_tracker import PHASES
from orchestree.visible import visible

PROGRESS_MIN = 20  # columns the status table keeps for an agent's progress
MARKS = {"completed": "✓", "failed": "✗", "running": "→", "created": "○"}
RADAR_BASE = "<base>"  # the base branch's side of a radar finding (never a lane id)
_WRAPPED = ("after", "progress")  # the columns that fold between words
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"

Lanes = Mapping[str, Mapping[str, Any]]


def describe_finding(lanes: Sequence[str], files: Sequence[str], base_branch: str) -> str:
    """One line for a radar finding: who meets whom, in which files."""
    a, b = lanes
    other = f"the base branch {base_branch}" if b == RADAR_BASE else f"lane {b}"
    return f"lane {a} would conflict with {other} in {', '.join(files) or '(no file named)'}"


def render(
    data: Mapping[str, Any],
    root: str,
    default_agent: str | None = None,
    show_all: bool = False,
    write: Callable[[str], object] | None = None,
) -> None:
    """Print the tracker `data` as the status screen (see the module's docstring).

    When there are more lanes than fit the terminal's height (and not `show_all`), it
    says the counts by status, lists the lanes that need a look first and folds the
    rest into one line with their counts (`fold.py`)."""
    write = write or sys.stdout.write  # the stream of now (a test may have replaced it)
    styled = _styled()

    def say(text: str, style: str = "") -> None:
        write(f"{style}{text}{_RESET}\n" if style and styled else text + "\n")

    size = shutil.get_terminal_size((80, 25))
    lanes: Lanes = data.get("lanes") or {}
    phase = int(data.get("phase", 0))
    name = PHASES[phase] if 0 <= phase < len(PHASES) else str(phase)
    base = f"base {data.get('base_branch', '')} @ {str(data.get('base_commit', ''))[:10]}"
    head = f"{root}  phase {phase} ({name}), {data.get('status', '')}; {base}"
    for n, line in enumerate(textwrap.wrap(head, size.columns, break_on_hyphens=False)):
        bold = styled and n == 0 and line.startswith(root)  # the repository, in bold
        write(f"{_BOLD}{root}{_RESET}{line[len(root) :]}\n" if bold else line + "\n")
    if not lanes:
        say("no lanes yet: add one with `orchestree add-lane <id> '<json>'`")
        return
    order = {k: int(lane.get("order", 0)) for k, lane in lanes.items()}
    shown = sorted(lanes, key=lambda k: order[k])
    room = max(fold.FOLD_MIN, size.lines - fold.FOLD_LINES)
    folded = None
    if not show_all and len(shown) > room:
        statuses = {k: _status(lanes[k]) for k in shown}
        folded = fold.fold(statuses, order, room)
        say(f"{len(shown)} lanes: {fold.counts(statuses.values())}")
        shown = folded.shown
    for line, style in _lane_lines(lanes, shown, default_agent, size.columns):
        say(line, style)
    if folded is not None:
        say(f"{fold.more_line(folded)}; `orchestree status --all` lists every lane", _DIM)
    for line in _after_table(data, shown):
        say(visible(line))
    # The agents and the cost fold between words; reasons stay whole, to copy a command.
    for line in _totals(data, folded is not None):
        for part in textwrap.wrap(
            visible(line), size.columns, break_on_hyphens=False, break_long_words=False
        ):
            say(part)
    for line in run_notes(data):
        say(visible(line))


def run_notes(data: Mapping[str, Any]) -> list[str]:
    """Why lanes do not start (a budget or deadline reached), notifiers that failed."""
    lines = []
    stopped = (data.get("limits") or {}).get("stop_message")
    if stopped:
        lines.append(f"stopped starting lanes: {stopped}")
    for failure in (data.get("notify") or {}).get("errors") or []:
        lines.append(f"notify failed: {failure}")
    return lines


def _styled() -> bool:
    """Bold and dim on a terminal, plain in a pipe or with NO_COLOR set."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _status(lane: Mapping[str, Any]) -> str:
    return str(lane.get("status", "pending"))


def _lane_lines(
    lanes: Lanes, shown: list[str], default_agent: str | None, width: int
) -> list[tuple[str, str]]:
    """The lanes `shown` as (line, style): a table when it fits `width`, else rows."""
    remote = any(lane.get("host") for lane in lanes.values())  # lanes ran on Dask workers
    with_cost = any(lane.get("cost_usd") is not None for lane in lanes.values())
    header = ["lane", "status", "prio", "agent", "tries"] + (["host"] if remote else [])
    header += ["cost"] if with_cost else []
    rows, notes = [], []
    for lane_id in shown:
        lane = lanes[lane_id]
        attempts, most = lane.get("attempts", 0), lane.get("max_attempts")
        tries = f"{attempts}/{most}" if most else str(attempts)
        agent = lane.get("agent") or default_agent or "-"
        cells = [lane_id, _status(lane), str(lane.get("priority", "medium")), agent, tries]
        if remote:
            cells.append(lane.get("host") or "")  # the worker's address is in `status --json`
        if with_cost:
            cost = lane.get("cost_usd")
            cells.append("-" if cost is None else f"${cost:.4f}")
        rows.append([visible(str(cell)) for cell in cells])
        notes.append((visible(", ".join(lane.get("depends_on") or [])), visible(_note(lane))))
    if _table_width(header, rows, notes) <= width:
        return _table(header, rows, notes, width)
    return _rows(header, rows, notes, width)


def _note(lane: Mapping[str, Any]) -> str:
    """The lane's progress column: its conflict, its error, or the agent's progress."""
    conflicts = (lane.get("merge") or {}).get("conflicts") or []
    if conflicts:
        return f"conflicts: {', '.join(conflicts)}"
    progress = lane.get("progress")
    note = lane.get("error") or ("" if progress is None else str(progress))
    status, waiting = _status(lane), lane.get("waiting_for")
    if status == "blocked" and lane.get("held"):
        return "held: its agent is not logged in (see below)"
    if status in ("completed", "merged") and lane.get("no_changes") and not note:
        return "changed nothing"
    if status == "pending" and waiting and not note:
        return f"waiting for {waiting}" + (
            " (see below)" if waiting in ("budget", "deadline") else ""
        )
    return str(note)


def _table_width(header: list[str], rows: list[list[str]], notes: list[tuple[str, str]]) -> int:
    """The least width of the table: whole fields, the longest dependency id, 20
    columns of progress, two spaces between columns."""
    fields = sum(max(len(cell) for cell in column) for column in zip(header, *rows, strict=True))
    after = max([len("after")] + [len(word) for deps, _ in notes for word in deps.split()])
    return fields + after + PROGRESS_MIN + 2 * (len(header) + 1)


def _table(
    header: list[str], rows: list[list[str]], notes: list[tuple[str, str]], width: int
) -> list[tuple[str, str]]:
    """A header, a rule, and a row a lane whose dependencies and progress wrap."""
    names = [*header[:5], *_WRAPPED, *header[5:]]
    table = [
        [*cells[:5], after, note, *cells[5:]]
        for cells, (after, note) in zip(rows, notes, strict=True)
    ]
    widths = [max(len(cell) for cell in column) for column in zip(names, *table, strict=True)]
    after, progress = names.index("after"), names.index("progress")
    fixed = sum(w for i, w in enumerate(widths) if i not in (after, progress))
    room = width - fixed - 2 * (len(names) - 1)
    if widths[after] + widths[progress] > room:
        least = max([len("after")] + [len(w) for deps, _ in notes for w in deps.split()])
        widths[after], widths[progress] = _share(widths[after], widths[progress], room, least)
    rule = "─" * (sum(widths) + 2 * (len(names) - 1))
    lines = [(_join(names, widths, names), _BOLD), (rule, "")]
    for cells in table:
        parts = [
            _wrap(cell, w) if i in (after, progress) else [cell]
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        for n in range(max(len(p) for p in parts)):
            lines.append((_join([p[n] if n < len(p) else "" for p in parts], widths, names), ""))
    return lines


def _wrap(text: str, width: int) -> list[str]:
    """`text` in lines of `width`, broken between words; a longer word starts a line of
    its own and is cut there, so that a short token in it (an escape shown as text)
    stays whole where it can."""
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    return [line[at : at + width] for line in lines for at in range(0, len(line), width)] or [""]


def _share(after: int, progress: int, room: int, least: int) -> tuple[int, int]:
    """The widths of the two folding columns in `room`: the wider gives way first, the
    dependencies never below their longest id (`least`), the progress never below 20
    columns (`_table_width` leaves room for both)."""
    half = room // 2
    if after <= half:
        after_now = after
    elif progress <= room - half:
        after_now = room - progress
    else:
        after_now = max(least, half)
    progress_now = max(PROGRESS_MIN, room - after_now)
    return room - progress_now, progress_now


def _join(cells: list[str], widths: list[int], names: list[str]) -> str:
    """One table line: cells padded to their column (amounts to the right)."""
    padded = (
        cell.rjust(w) if name == "cost" else cell.ljust(w)
        for cell, w, name in zip(cells, widths, names, strict=True)
    )
    return "  ".join(padded).rstrip()


def _rows(
    header: list[str], rows: list[list[str]], notes: list[tuple[str, str]], width: int
) -> list[tuple[str, str]]:
    """The status as lines: a lane's fields on one line, its progress wrapped below."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [(line(header), _BOLD)]
    for cells, (after, note) in zip(rows, notes, strict=True):
        lines.append((line(cells), ""))
        text = f"after {after}" + (f"; {note}" if note else "") if after else note
        lines.extend((f"    {part}", "") for part in _wrap(text, max(20, width - 4)))
    return lines


def _after_table(data: Mapping[str, Any], shown: list[str]) -> list[str]:
    """The lines below the table: who is held and why (said once), the radar's findings."""
    lanes: Lanes = data.get("lanes") or {}
    lines = []
    # Lanes held for one agent's missing login share one reason: say it once, unwrapped.
    held: dict[str, list[str]] = {}
    for lane_id in shown:
        lane = lanes[lane_id]
        if _status(lane) == "blocked" and lane.get("held") and lane.get("error"):
            held.setdefault(str(lane["error"]), []).append(lane_id)
    lines += [f"{', '.join(ids)} held: {why}" for why, ids in held.items()]
    for finding in data.get("radar") or []:
        said = describe_finding(finding["lanes"], finding.get("files") or [], data["base_branch"])
        lines.append(f"radar: {said} (since {finding.get('since', '')})")
    return lines


def _totals(data: Mapping[str, Any], folded: bool) -> list[str]:
    """The agents (counted when the lanes are folded) and what the lanes cost."""
    lanes: Lanes = data.get("lanes") or {}
    lines = []
    agents: Mapping[str, Mapping[str, Any]] = data.get("agents") or {}
    statuses = {name: str(a.get("status", "created")) for name, a in agents.items()}
    if agents and folded:  # one line, not hundreds of names
        lines.append(f"agents: {fold.counts(statuses.values())}")
    elif agents:
        marks = (f"{MARKS.get(s, '?')} {name}" for name, s in sorted(statuses.items()))
        lines.append(f"agents: {', '.join(marks)}")
    costs = [lane["cost_usd"] for lane in lanes.values() if lane.get("cost_usd") is not None]
    if costs:
        estimated = any(lane.get("cost_estimated") for lane in lanes.values())
        note = " (in part estimated from token counts and [prices])" if estimated else ""
        lines.append(f"cost: ${sum(costs):.4f} over {len(costs)} lane(s){note}")
    return lines
