"""The conflict radar (DESIGN.md §13): which lanes' work would conflict, while they run.

A lane's work is its committed head or, for a running lane, the files in its worktree
read as a tree without touching them (`git add -A` into a scratch copy of its index,
then `write-tree`, through the worktree's admin folder: `git.working_tree`). Only pairs
whose changed paths (against their start points) overlap with different contents get
a `git merge-tree` (two sides that made a file the same cannot conflict on it); each
lane is also checked against the current base branch. Textual conflicts only: two lanes
that change different lines of one file merge cleanly and raise nothing.

Findings go into the tracker's `radar` list (`record`), with an event `radar` when a
pair appears or clears. `execute` runs a pass every `[radar] every_s` seconds and soon
after each lane finishes (at most one nudged pass a `NUDGE_S`), in a thread
(`Background`), so its loop never waits for git. Its passes share a `Memo`: what a
committed head changed and what a pair of commits gives is asked of git once a run.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from orchestree import git, worktree_guard
from orchestree.access_tracker import now_iso
from orchestree.errors import GitError
from orchestree.layout import Layout, branch
from orchestree.models import MERGEABLE, RADAR_BASE, RadarFinding, Tracker, describe_finding
from orchestree.tracker import TrackerStore

WATCHED = MERGEABLE | {"running"}  # lanes with work the base has not taken
WORKERS = 4  # git calls wait on the disk and on their own process: 4 keep 2 cores busy
# Lanes that finish in quick succession get one pass, not one each: a pass reads every
# running worktree, and on 2 cores back-to-back passes slow the lanes they watch.
NUDGE_S = 1.0


@dataclass(frozen=True)
class LaneWork:
    """What the radar compares of one lane."""

    lane_id: str
    commit: str  # its head, or a commit of its working files on top of its head
    start: str  # where it started: its changes are counted from here
    paths: frozenset[str]
    working: bool  # `commit` holds the files of a running lane's worktree
    blobs: dict[str, str] = field(default_factory=dict)  # path -> "<mode> <blob>" in `commit`


@dataclass
class Memo:
    """What passes of one run share: git's answers that cannot change (a commit's
    changes from a start, the merge of two commits)."""

    works: dict[tuple[str, str, str], LaneWork] = field(default_factory=dict)
    conflicts: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    moved: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    forks: dict[tuple[str, str], str | None] = field(default_factory=dict)  # merge bases
    who: tuple[str, str] | None = None

    def fork(self, root: Path, head: str, base: str) -> str | None:
        """Where a branch made by hand forked from the base."""
        if self.forks.get((head, base)) is None:  # none found may be a failure: ask again
            self.forks[(head, base)] = git.merge_base(root, head, base)
        return self.forks[(head, base)]


@dataclass(frozen=True)
class Finding:
    lanes: tuple[str, str]  # two lanes, or a lane and RADAR_BASE
    files: tuple[str, ...]


@dataclass
class Scan:
    """One radar pass."""

    base_branch: str
    base: str
    works: list[LaneWork] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    merges: int = 0  # pairs that overlapped and got a merge-tree
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def scan(
    layout: Layout, tracker: Tracker, workers: int = WORKERS, memo: Memo | None = None
) -> Scan:
    """Predict the conflicts between every pair of lanes with work, and between each
    of them and the base branch; writes nothing but unreferenced git objects. `memo`
    keeps git's lasting answers for the next pass."""
    began = time.monotonic()
    root = layout.root
    memo = memo if memo is not None else Memo()
    base = git.head_commit(root, f"refs/heads/{tracker.base_branch}")
    if base is None:
        return Scan(tracker.base_branch, "", notes=[f"no base branch {tracker.base_branch!r}"])
    result = Scan(tracker.base_branch, base)
    heads = git.ref_heads(root, "refs/heads/lane-*")
    memo.who = who = memo.who or git.identity(root)
    chosen = sorted(
        (k, lane.status, heads.get(branch(k)) or lane.head_commit, lane.start_commit)
        for k, lane in tracker.lanes.items()
        if lane.kind == "lane" and lane.status in WATCHED
    )
    with tempfile.TemporaryDirectory(prefix="orchestree-radar-") as scratch:

        def work(item: tuple[str, str, str | None, str | None]) -> LaneWork | str | None:
            lane_id, status, head, start = item
            try:
                if head is not None and start is None:  # made by hand: from where it forked
                    start = memo.fork(root, head, base)
                return _lane_work(layout, lane_id, status, head, start or base, who,
                                  Path(scratch), memo)  # fmt: skip
            except GitError as exc:  # one unreadable lane (a file it cannot read) is a note
                said = " ".join(str(exc).split())[:200]
                return f"lane {lane_id}: not compared ({said})"

        with ThreadPoolExecutor(max(1, workers)) as pool:
            for got in pool.map(work, chosen):
                if isinstance(got, str):
                    result.notes.append(got)
                elif got is not None and got.paths:
                    result.works.append(got)
            pairs = _overlapping(root, result.works, base, memo)
            result.merges = len(pairs)
            found = pool.map(lambda commits: _conflicts(root, memo, *commits), pairs.values())
            for lanes, conflicts in zip(pairs, found, strict=True):
                if conflicts:
                    result.findings.append(Finding(lanes, tuple(conflicts)))
    result.findings.sort(key=lambda f: f.lanes)
    result.seconds = time.monotonic() - began
    return result


def _lane_work(
    layout: Layout,
    lane_id: str,
    status: str,
    head: str | None,
    start: str,
    who: tuple[str, str],
    scratch: Path,
    memo: Memo,
) -> LaneWork | str | None:
    """The lane's work; a note (str) when its worktree is not ours to read; None when
    it has no commit yet. A committed head's is asked of git once (`memo`)."""
    if head is None:
        return None
    root = layout.root
    path = layout.worktree(lane_id)
    note = None
    if status == "running" and path.exists():
        check = worktree_guard.verify(root, path, branch(lane_id))
        if check.admin is not None and check.problem is None:
            tree = git.working_tree_beside(check.admin, path, scratch / f"{lane_id}.index")
            said = f"radar: working files of {lane_id}\n"
            commit = git.commit_of_tree(root, tree, head, said, who)
            blobs = git.changed_blobs(root, start, commit)
            return LaneWork(lane_id, commit, start, frozenset(blobs), True, blobs)
        note = f"lane {lane_id}: its committed work only ({check.problem})"
    work = memo.works.get((lane_id, head, start))
    if work is None:
        blobs = git.changed_blobs(root, start, head)
        work = LaneWork(lane_id, head, start, frozenset(blobs), False, blobs)
        memo.works[(lane_id, head, start)] = work
    return note if note and not work.paths else work


def _overlapping(
    root: Path, works: list[LaneWork], base: str, memo: Memo
) -> dict[tuple[str, str], tuple[str, str]]:
    """(side, side) -> (commit, commit) for every pair that changed a path to different
    contents (the same change on both sides merges cleanly)."""
    pairs: dict[tuple[str, str], tuple[str, str]] = {}
    for i, j in _sharing(works):
        a, b = works[i], works[j]
        if _differ(a.blobs, b.blobs, a.paths & b.paths):
            pairs[(a.lane_id, b.lane_id)] = (a.commit, b.commit)
    for w in works:
        if (w.start, base) not in memo.moved:  # what the base changed since the lane began
            memo.moved[(w.start, base)] = git.changed_blobs(root, w.start, base)
        moved = memo.moved[(w.start, base)]
        if _differ(w.blobs, moved, w.paths & moved.keys()):
            pairs[(w.lane_id, RADAR_BASE)] = (base, w.commit)
    return pairs


def _sharing(works: list[LaneWork]) -> list[tuple[int, int]]:
    """The pairs (i < j, sorted) of `works` that change a path in common, found through
    an index of paths: as many steps as paths and overlapping pairs, where comparing
    every pair took 125,000 set intersections a pass at 500 lanes."""
    by_path: dict[str, list[int]] = {}
    for n, work in enumerate(works):
        for path in work.paths:
            by_path.setdefault(path, []).append(n)
    found: set[tuple[int, int]] = set()
    for sides in by_path.values():
        found.update(combinations(sides, 2))
    return sorted(found)


def _differ(one: dict[str, str], other: dict[str, str], paths: Iterable[str]) -> bool:
    # A side without blob ids (built by hand) counts every shared path as different.
    return any(not one or not other or one.get(p) != other.get(p) for p in paths)


def _conflicts(root: Path, memo: Memo, ours: str, theirs: str) -> list[str]:
    known = memo.conflicts.get((ours, theirs))
    if known is None:  # two commits merge the same way every time
        known = memo.conflicts[(ours, theirs)] = git.merge_tree(root, ours, theirs).conflicts
    return known


# --- The tracker's record ----------------------------------------------------------


def record(store: TrackerStore, findings: list[Finding]) -> tuple[list[Finding], list[Finding]]:
    """Put `findings` in the tracker's `radar` (a pair keeps its `since`); the pairs that
    appeared and cleared. Writes only when something changed, with one `radar` event."""
    tracker = store.read()
    old = {_key(f.lanes): f for f in tracker.radar}
    new = {f.lanes: f for f in findings if _known(tracker, f.lanes)}
    appeared = [f for k, f in new.items() if k not in old]
    cleared = [Finding(k, tuple(f.files)) for k, f in old.items() if k not in new]
    changed = [k for k, f in new.items() if k in old and list(f.files) != old[k].files]
    if not (appeared or cleared or changed):
        return [], []

    def change(t: Tracker) -> None:
        had = {_key(f.lanes): f.since for f in t.radar}
        stamp = now_iso()
        t.radar = [
            RadarFinding(lanes=list(k), files=list(f.files), since=had.get(k, stamp))
            for k, f in sorted(new.items())
            if _known(t, k)
        ]

    store.update(change, "radar", appeared=_said(appeared), cleared=_said(cleared))
    return appeared, cleared


def _key(lanes: Iterable[str]) -> tuple[str, str]:
    a, b = lanes
    return a, b


def _known(tracker: Tracker, lanes: tuple[str, str]) -> bool:
    """Both sides still exist and are not merged (a merged lane is part of the base)."""
    return all(
        k == RADAR_BASE or (k in tracker.lanes and tracker.lanes[k].status in WATCHED)
        for k in lanes
    )


def still_ahead(tracker: Tracker) -> list[RadarFinding]:
    """The tracker's findings whose lanes are all still unmerged (the next pass says
    what a merged lane's work now meets, as part of the base)."""
    return [f for f in tracker.radar if _known(tracker, _key(f.lanes))]


def _said(findings: list[Finding]) -> list[dict[str, list[str]]]:
    return [{"lanes": list(f.lanes), "files": list(f.files)} for f in findings]


def cleared_line(finding: Finding, base_branch: str) -> str:
    a, b = finding.lanes
    other = f"the base branch {base_branch}" if b == RADAR_BASE else f"lane {b}"
    return f"lane {a} no longer conflicts with {other}"


def describe_scan(found: Scan) -> list[str]:
    """What `orchestree radar` prints: each finding, then what was compared."""
    from orchestree.visible import visible

    base = found.base_branch
    lines = [f"note: {visible(note)}" for note in found.notes]
    lines += [
        visible(f"conflict ahead: {describe_finding(f.lanes, f.files, base)}")
        for f in found.findings
    ]
    working = sum(w.working for w in found.works)
    lines.append(
        f"{len(found.findings) or 'no'} conflict{'s' if len(found.findings) != 1 else ''} "
        f"ahead among {len(found.works)} lane{'s' if len(found.works) != 1 else ''} with work "
        f"({working} read from running worktrees) and {base}; "
        f"{found.merges} overlapping pair{'s' if found.merges != 1 else ''} merged in memory "
        f"in {found.seconds:.2f} s"
    )
    return lines


def as_json(found: Scan) -> dict[str, object]:
    """`orchestree radar --json`."""
    return {
        "base_branch": found.base_branch,
        "base": found.base,
        "findings": [{"lanes": list(f.lanes), "files": list(f.files)} for f in found.findings],
        "lanes": [
            {"id": w.lane_id, "commit": w.commit, "working": w.working, "files": sorted(w.paths)}
            for w in found.works
        ],
        "merges": found.merges,
        "seconds": round(found.seconds, 3),
        "notes": found.notes,
    }


# --- During execute ----------------------------------------------------------------


class Background:
    """Radar passes beside `execute`'s loop: `tick()` from the loop starts one when it is
    due (every `every_s`, or after `nudge()` once `NUDGE_S` passed since the last one
    began), in a thread, and records the last one's findings; the loop itself never
    waits for git."""

    def __init__(self, layout: Layout, store: TrackerStore, every_s: float,
                 report: Callable[[str], None]) -> None:  # fmt: skip
        self.layout, self.store, self.every_s, self.report = layout, store, every_s, report
        self._thread: threading.Thread | None = None
        self._result: Scan | BaseException | None = None
        self._next = time.monotonic()  # the first pass as soon as lanes run
        self._began = float("-inf")  # when the last pass began
        self._nudged = False
        self.memo = Memo()

    def nudge(self) -> None:
        """A lane committed: look again at the next tick."""
        self._nudged = True

    def tick(self) -> None:
        if self.every_s <= 0:
            return
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
            self._take()
        now = time.monotonic()
        nudged = self._nudged and now >= self._began + min(self.every_s, NUDGE_S)
        if self._thread is None and (nudged or now >= self._next):
            self._nudged = False
            self._began, self._next = now, now + self.every_s
            tracker = self.store.read()
            self._thread = threading.Thread(target=self._pass, args=(tracker,),
                                            name="orchestree-radar", daemon=True)  # fmt: skip
            self._thread.start()

    def close(self, last: bool = False) -> None:
        """Wait for a pass in flight (git only reads) and record it; with `last`, also
        look once more when a lane finished since, so the tracker tells `merge` what
        the finished lanes meet."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._take()
        if last and self._nudged and self.every_s > 0:
            self._nudged = False
            self._pass(self.store.read())
            self._take()

    def _pass(self, tracker: Tracker) -> None:
        try:
            self._result = scan(self.layout, tracker, memo=self.memo)
        except BaseException as exc:  # handed to the loop's thread, which says it
            self._result = exc

    def _take(self) -> None:
        result, self._result = self._result, None
        if isinstance(result, BaseException):
            self.report(f"! radar: a pass failed ({result}); the lanes run on")
            return
        if result is None:
            return
        appeared, cleared = record(self.store, result.findings)
        base = result.base_branch
        for f in appeared:
            self.report(f"! radar: {describe_finding(f.lanes, f.files, base)}")
        for f in cleared:
            self.report(f"✓ radar: {cleared_line(f, base)}")
