"""What a view shows when there are more lanes than fit: the counts by status, the
lanes that need a look first (running, then failing, then stuck), the rest folded
into one line with their counts. Pure: the views (`status`, the console monitor)
decide the room, this decides what fills it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import NamedTuple, TypeVar

T = TypeVar("T")

# Lower sorts first: what is happening now, then what failed, then what waits.
RANK: dict[str, int] = {
    "running": 0,
    "failed": 1,
    "conflict": 1,
    "verify_failed": 1,
    "blocked": 2,
    "cancelled": 2,
    "pending": 3,
    "completed": 4,
    "merged": 5,
}
# The order counts are said in.
ORDER = ("running", "failed", "conflict", "verify_failed", "blocked", "cancelled", "pending",
         "completed", "merged")  # fmt: skip

# A view (`status`, `monitor --once`) folds lanes beyond the screen's height less these
# lines (the header, the counts, the table's head, the fold line, held reasons, agents,
# cost, the prompt), and always shows at least FOLD_MIN.
FOLD_LINES = 10
FOLD_MIN = 10


class Folded(NamedTuple):
    shown: list[str]  # the ids to show, in the order to show them
    hidden: Counter[str]  # status -> how many lanes of it are folded away


def counts(statuses: Iterable[str]) -> str:
    """`3 running, 1 failed, 496 merged`: statuses in `ORDER`, the ones with lanes."""
    seen = Counter(statuses)
    known = [s for s in ORDER if seen[s]] + sorted(s for s in seen if s not in ORDER)
    return ", ".join(f"{seen[s]} {s}" for s in known)


def fold(statuses: Mapping[str, str], order: Mapping[str, int], room: int) -> Folded:
    """At most `room` lane ids, those that need a look first (`RANK`), each group in
    `order` (the plan's); every other lane counted by status."""
    ranked = sorted(statuses, key=lambda k: (RANK.get(statuses[k], 6), order.get(k, 0), k))
    shown = ranked[: max(room, 0)]
    return Folded(shown, Counter(statuses[k] for k in ranked[len(shown) :]))


def more_line(folded: Folded, what: str = "lanes") -> str:
    """`… and 470 more lanes (460 merged, 10 pending)`, or nothing when none is hidden."""
    total = sum(folded.hidden.values())
    if not total:
        return ""
    return f"… and {total} more {what} ({counts(folded.hidden.elements())})"
