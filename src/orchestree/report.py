"""What the CLI shows besides `status` (`statusview.py`): a run's summary, the plan as
a list, and the live progress lines of execute, merge, cleanup and probes. Agent text
is shown as text."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orchestree.layout import Layout
from orchestree.models import ENDED, Lane, Plan, Tracker
from orchestree.visible import visible

if TYPE_CHECKING:
    from rich.text import Text


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
