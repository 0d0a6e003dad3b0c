"""Batched verification with bisection (DESIGN.md §13): the pure part of the merge queue.

`[merge] verify` is the slow step of a merge: one run per lane costs a minute each
with a real test suite. Here up to `batch` lanes join the candidate before one verify
run checks them all. When that run fails, a binary search over the candidate's
prefixes (halves, in merge order) finds the first lane whose merge breaks it: the
lanes before it are kept (their prefix passed), that lane is dropped, and the lanes
after it go back to the queue to be merged again on top of the shorter candidate,
since a conflict or a pass of theirs may have depended on the dropped lane.

When verify failures are independent of each other (a lane breaks the tests whatever
else is merged), the merged lanes are exactly those that one-at-a-time verification
(`batch = 1`) merges; `tests/test_batch.py` checks that as a property. One lane that
breaks the tests among n costs at most ⌈(n-1)/batch⌉ + 1 + ⌈log2 batch⌉ verify runs.

The queue knows lanes only by id and talks to the merge through a `Candidate`; it
decides nothing about git, so a verify oracle can stand in for the real command.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol


class Candidate(Protocol):
    """The merge candidate the queue grows, verifies and cuts back."""

    def add(self, lane_id: str) -> bool:
        """Decide `lane_id` on top of the candidate (merge it, or find it conflicts or
        must be skipped); True when it joined the candidate as a new merge to verify."""

    def fails(self, lane_id: str) -> bool:
        """Verify the candidate as it was right after `lane_id` joined it; True on failure."""

    def drop(self, lane_ids: list[str]) -> None:
        """Forget the decisions of `lane_ids` (in order, the last ones added): the
        candidate goes back to what it was before the first of them was added."""

    def settle(self, lane_id: str, broken: bool) -> None:
        """`lane_id` is decided for good; `broken`: its merge failed verification."""


def first_broken(chain: Sequence[str], fails: Callable[[str], bool]) -> tuple[int | None, int]:
    """The index in `chain` of the first lane whose prefix fails, or None when the whole
    chain passes; and the number of verify runs that took.

    The prefix before the index returned has passed a run (or is empty), so the lanes
    before it are verified together without another run."""
    if not chain:
        return None, 0
    runs = 1
    if not fails(chain[-1]):
        return None, runs
    lo, hi = 0, len(chain) - 1  # chain[:lo] passed (or is empty); chain[:hi + 1] failed
    while lo < hi:
        mid = (lo + hi) // 2
        runs += 1
        if fails(chain[mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo, runs


def verify_in_batches(order: Sequence[str], batch: int, candidate: Candidate) -> int:
    """Decide every lane of `order` through `candidate`, verifying up to `batch` new
    merges with one run; returns the number of verify runs."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    pending = deque(order)
    runs = 0
    while pending:
        window: list[str] = []  # the lanes decided since the last settled one
        chain: list[str] = []  # those of them that joined the candidate as new merges
        while pending and len(chain) < batch:
            lane_id = pending.popleft()
            window.append(lane_id)
            if candidate.add(lane_id):
                chain.append(lane_id)
        broken, used = first_broken(chain, candidate.fails)
        runs += used
        if broken is None:
            for lane_id in window:
                candidate.settle(lane_id, False)
            continue
        cut = window.index(chain[broken])
        candidate.drop(window[cut:])
        for lane_id in window[:cut]:
            candidate.settle(lane_id, False)
        candidate.settle(window[cut], True)
        pending.extendleft(reversed(window[cut + 1 :]))
    return runs
