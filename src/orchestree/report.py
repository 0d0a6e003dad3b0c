"""What the CLI shows: the `status` table, a run's summary, the plan as a list, and the
live progress lines of execute, merge, cleanup and probes. Agent text is shown as text."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestree.fold import FOLD_LINES, FOLD_MIN
from orchestree.layout import Layout
from orchestree.models import ENDED, PHASES, Lane, Plan, Tracker, describe_finding
from orchestree.visible import visible

if TYPE_CHECKING:
    from rich.text import Text

PROGRESS_MIN = 20  # columns the status table keeps for an agent's progress
MARKS = {"completed": "✓", "failed": "✗", "running": "→", "created": "○"}


def render_status(
    tracker: Tracker, layout: Layout, default_agent: str | None = None, show_all: bool = False
) -> None:
    """The tracker as a table. Agent text (progress, errors) is shown as text: Rich
    markup in it is not interpreted and control characters are shown as escapes.

    When there are more lanes than fit one screen (and not `show_all`), it says the
    counts by status, lists the lanes that need a look first and folds the rest into
    one line with their counts (`fold.py`)."""
    from rich.console import Console
    from rich.text import Text

    from orchestree import fold

    console = Console(highlight=False, soft_wrap=False)
    phase = PHASES[tracker.phase] if tracker.phase < len(PHASES) else str(tracker.phase)
    console.print(
        Text.assemble(
            (str(layout.root), "bold"),
            f"  phase {tracker.phase} ({phase}), {tracker.status}; "
            f"base {tracker.base_branch} @ {tracker.base_commit[:10]}",
        )
    )
    if not tracker.lanes:
        console.print("no lanes yet: add one with `orchestree add-lane <id> '<json>'`")
        return
    ordered = sorted(tracker.lanes.items(), key=lambda item: item[1].order)
    room = max(FOLD_MIN, console.size.height - FOLD_LINES)
    folded = None
    if not show_all and len(ordered) > room:
        statuses = {k: lane.status for k, lane in ordered}
        folded = fold.fold(statuses, {k: lane.order for k, lane in ordered}, room)
        console.print(f"{len(ordered)} lanes: {fold.counts(statuses.values())}")
        ordered = [(k, tracker.lanes[k]) for k in folded.shown]
    remote = any(lane.host for lane in tracker.lanes.values())  # lanes ran on Dask workers
    with_cost = any(lane.cost_usd is not None for lane in tracker.lanes.values())
    header = ["lane", "status", "prio", "agent", "tries"] + (["host"] if remote else [])
    header += ["cost"] if with_cost else []
    rows, notes = [], []
    for lane_id, lane in ordered:
        tries = f"{lane.attempts}/{lane.max_attempts}" if lane.max_attempts else str(lane.attempts)
        cells = [lane_id, lane.status, lane.priority, lane.agent or default_agent or "-", tries]
        if remote:
            cells.append(lane.host or "")  # the worker's address is in `status --json`
        if with_cost:
            cells.append("-" if lane.cost_usd is None else f"${lane.cost_usd:.4f}")
        rows.append([visible(cell) for cell in cells])
        notes.append((visible(", ".join(lane.depends_on)), visible(_note(lane))))
    if _table_width(header, rows, notes) <= console.width:
        console.print(_status_table(header, rows, notes))
    else:  # too narrow for a table whose text keeps its words: one line a lane, text below
        _print_rows(console, header, rows, notes)
    if folded is not None:
        more = fold.more_line(folded)
        console.print(Text(f"{more}; `orchestree status --all` lists every lane", style="dim"))
    # Lanes held for one agent's missing login share one reason: say it once, unwrapped.
    held: dict[str, list[str]] = {}
    for lane_id, lane in ordered:
        if lane.status == "blocked" and lane.held and lane.error:
            held.setdefault(lane.error, []).append(lane_id)
    for why, lane_ids in held.items():
        console.print(Text(visible(f"{', '.join(lane_ids)} held: {why}")), soft_wrap=True)
    if tracker.radar:
        for finding in tracker.radar:
            line = visible(
                f"radar: {describe_finding(finding.lanes, finding.files, tracker.base_branch)} "
                f"(since {finding.since})"
            )
            console.print(Text(line), soft_wrap=True)
    if tracker.agents and folded is not None:  # one line, not hundreds of names
        console.print(f"agents: {fold.counts(a.status for a in tracker.agents.values())}")
    elif tracker.agents:
        agents = ", ".join(
            f"{MARKS.get(a.status, '?')} {name}" for name, a in sorted(tracker.agents.items())
        )
        console.print(Text(visible(f"agents: {agents}")))
    costs = [lane.cost_usd for lane in tracker.lanes.values() if lane.cost_usd is not None]
    if costs:
        estimated = any(lane.cost_estimated for lane in tracker.lanes.values())
        note = " (in part estimated from token counts and [prices])" if estimated else ""
        console.print(Text(f"cost: ${sum(costs):.4f} over {len(costs)} lane(s){note}"))
    for line in run_notes(tracker):
        console.print(Text(visible(line)), soft_wrap=True)


def run_notes(tracker: Tracker) -> list[str]:
    """Why lanes do not start (a budget or deadline reached), notifiers that failed."""
    lines = []
    if tracker.limits is not None and tracker.limits.stop_message:
        lines.append(f"stopped starting lanes: {tracker.limits.stop_message}")
    for failure in tracker.notify.errors if tracker.notify else []:
        lines.append(f"notify failed: {failure}")
    return lines


def _table_width(header: list[str], rows: list[list[str]], notes: list[tuple[str, str]]) -> int:
    """The least width of `_status_table`: whole fields, the longest dependency id, 20
    columns of progress, two spaces between columns."""
    fields = sum(max(len(cell) for cell in column) for column in zip(header, *rows, strict=True))
    after = max([len("after")] + [len(word) for deps, _ in notes for word in deps.split()])
    return fields + after + PROGRESS_MIN + 2 * (len(header) + 1)


def _status_table(header: list[str], rows: list[list[str]], notes: list[tuple[str, str]]) -> Any:
    """A light frame (no borders to pay for): ids, statuses and amounts stay whole, the
    dependencies and the progress fold between words, the progress keeps 20 columns."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False, expand=False, box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False, collapse_padding=True)  # fmt: skip
    for column in [*header[:5], "after", "progress", *header[5:]]:
        table.add_column(
            column,
            no_wrap=column not in ("host", "after", "progress"),
            justify="right" if column == "cost" else "left",
            min_width=PROGRESS_MIN if column == "progress" else None,
            ratio=1 if column == "progress" else None,
        )
    for cells, (after, note) in zip(rows, notes, strict=True):
        table.add_row(*(Text(cell) for cell in [*cells[:5], after, note, *cells[5:]]))
    return table


def _print_rows(
    console: Any, header: list[str], rows: list[list[str]], notes: list[tuple[str, str]]
) -> None:
    """The status as lines: a lane's fields on one line, its progress wrapped below."""
    import textwrap

    from rich.text import Text

    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    console.print(Text(line(header), style="bold"), soft_wrap=True)
    for cells, (after, note) in zip(rows, notes, strict=True):
        console.print(Text(line(cells)), soft_wrap=True)
        text = f"after {after}" + (f"; {note}" if note else "") if after else note
        for part in textwrap.wrap(text, width=max(20, console.width - 4)):
            console.print(Text(f"    {part}"), soft_wrap=True)


def _note(lane: Lane) -> str:
    """The lane's progress column: its conflict, its error, or the agent's progress."""
    if lane.merge.conflicts:
        return f"conflicts: {', '.join(lane.merge.conflicts)}"
    note = lane.error or ("" if lane.progress is None else str(lane.progress))
    if lane.status == "blocked" and lane.held:
        return "held: its agent is not logged in (see below)"
    if lane.status in ("completed", "merged") and lane.no_changes and not note:
        return "changed nothing"
    if lane.status == "pending" and lane.waiting_for and not note:
        return f"waiting for {lane.waiting_for}" + (
            " (see below)" if lane.waiting_for in ("budget", "deadline") else ""
        )
    return note


class StepProgress:
    """On a TTY: one live line saying which step runs now and for how long (a 4 s
    verify is not a silent one), with finished lines scrolling above it. Use `plain`
    off a TTY: it prints each finished line as it comes."""

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.label = label
        self.began = time.monotonic()
        self.current: tuple[str, float] | None = None
        self.console = Console(highlight=False)
        self.live = Live(
            get_renderable=self._render, console=self.console, refresh_per_second=4,
            transient=True,
        )  # fmt: skip

    def step(self, text: str | None) -> None:
        """`text` (e.g. "verifying docs") starts now; None when it is over."""
        self.current = None if text is None else (text, time.monotonic())

    def _render(self) -> Text:
        from rich.text import Text

        return Text(visible(self._line()))

    def _line(self) -> str:
        now = time.monotonic()
        total = f"{now - self.began:.0f}s in all"
        if self.current is None:
            return f"{self.label} · {total}"
        text, since = self.current
        return f"{self.label}: {text} · {now - since:.1f}s ({total})"

    def __call__(self, message: str) -> None:
        from rich.text import Text

        self.console.print(Text(visible(message, keep="\n\t")))

    def __enter__(self) -> StepProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)


def _age(started_at: str | None, now: datetime) -> str:
    """How long a lane has run, e.g. `12s`; empty when it has no start time."""
    try:
        began = datetime.fromisoformat(started_at or "")
    except ValueError:
        return ""
    if began.tzinfo is None:
        return ""
    return f"{max(0.0, (now - began).total_seconds()):.0f}s"


def plain(message: str) -> None:
    """A finished line, off a TTY: printed and flushed at once, agent text as text."""
    sys.stdout.write(visible(message, keep="\n\t") + "\n")
    sys.stdout.flush()


class LiveProgress(StepProgress):
    """On a TTY: state changes scroll above a line showing lanes done/total and which
    run (or, while a merge runs, its step). Without one, `plain` prints one line per
    state change."""

    def __init__(self, read: Callable[[], Tracker], kind: str | None = "lane") -> None:
        super().__init__("merge")
        self.read = read
        self.kind = kind

    def _line(self) -> str:
        if self.current is not None:
            return super()._line()
        try:
            tracker = self.read()
        except Exception:  # a view never fails the run it shows
            return "…"
        lanes = {k: v for k, v in tracker.lanes.items() if self.kind in (None, v.kind)}
        done = sum(1 for lane in lanes.values() if lane.status in ENDED)
        now = datetime.now(UTC)
        running = [f"{k} {_age(lane.started_at, now)}" for k, lane in lanes.items()
                   if lane.status == "running"]  # fmt: skip
        shown = ", ".join(running[:6]) + (" …" if len(running) > 6 else "")
        total = f"{time.monotonic() - self.began:.0f}s in all"
        return f"{done}/{len(lanes)} lanes done · running: {shown or 'none'} · {total}"

    def _render(self) -> Text:
        from rich.text import Text

        return Text(visible(self._line()), style="bold")

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self


# The order a tally names outcomes in: what was achieved, then what needs a person.
TALLY_ORDER = (
    "merged", "changed nothing", "completed", "conflict", "verify_failed", "failed",
    "blocked", "cancelled", "running", "pending",
)  # fmt: skip
UNCHANGED = "changed nothing"


def outcome(lane: Lane) -> str:
    """The lane's status as a summary counts it: a lane that completed (or was
    "merged") without changing any file changed nothing; it did not merge anything."""
    if lane.no_changes and lane.status in ("completed", "merged"):
        return UNCHANGED
    return lane.status


def tally(outcomes: list[str], noun: str = "lane", always: tuple[str, ...] = ()) -> str:
    """`10 lanes: 0 merged, 10 changed nothing`: outcomes counted, in TALLY_ORDER;
    those in `always` are named even at 0."""
    counts: dict[str, int] = {}
    for name in outcomes:
        counts[name] = counts.get(name, 0) + 1
    rank = {name: i for i, name in enumerate(TALLY_ORDER)}
    named = sorted(set(counts) | set(always), key=lambda k: (rank.get(k, len(rank)), k))
    parts = ", ".join(f"{counts.get(k, 0)} {k.replace('_', ' ')}" for k in named)
    plural = "" if len(outcomes) == 1 else "s"
    return f"{len(outcomes)} {noun}{plural}: {parts or 'none'}"


def summary_lines(tracker: Tracker, layout: Layout) -> list[str]:
    """What a finished run comes to: lanes by outcome (lanes that changed nothing are
    not called merged), then every lane, with why and where to look."""
    ordered = sorted(tracker.lanes.items(), key=lambda item: item[1].order)
    work = [outcome(lane) for _, lane in ordered if lane.kind != "probe"]
    probed = [outcome(lane) for _, lane in ordered if lane.kind == "probe"]
    head = [tally(work, always=("merged",))] if work or not probed else []
    head += [tally(probed, "probe")] if probed else []
    lines = ["summary: " + "; ".join(head)]
    for lane_id, lane in ordered:
        kind = "probe " if lane.kind == "probe" else ""
        retried = f" after {lane.attempts} attempts" if lane.attempts > 1 else ""
        error = visible(lane.error or "", keep="\n\t")
        if outcome(lane) == UNCHANGED:
            lines.append(f"  · {kind}{lane_id}: {UNCHANGED}{retried}")
        elif lane.status == "merged":
            lines.append(f"  ✓ {kind}{lane_id}: merged{retried}")
        elif lane.status == "conflict":
            files = visible(", ".join(lane.merge.conflicts))
            lines.append(f"  ✗ {kind}{lane_id}: conflict in {files} (its branch is kept)")
        elif lane.status in ("failed", "verify_failed"):
            log = layout.rel(layout.log(lane_id))
            lines.append(f"  ✗ {kind}{lane_id}: {lane.status}: {error} (log: {log})")
        elif lane.status in ("blocked", "cancelled"):
            lines.append(f"  ✗ {kind}{lane_id}: {lane.status}: {error}")
        elif lane.merge.status == "skipped":
            lines.append(f"  - {kind}{lane_id}: not merged: {error}")
        else:
            lines.append(f"  · {kind}{lane_id}: {lane.status}{retried}")
    return lines


def render_summary(tracker: Tracker, layout: Layout) -> None:
    for line in summary_lines(tracker, layout):
        print(line)


def plan_lines(plan: Plan) -> list[str]:
    """One line a lane: its id, priority, what it waits for, and its name."""
    lines = []
    for lane_id, lane in plan.lanes.items():
        after = f" (after {', '.join(lane.depends_on)})" if lane.depends_on else ""
        lines.append(visible(f"  {lane_id} [{lane.priority}]{after}: {lane.name}"))
    return lines
