"""The tracker kept in memory between writes, so a write costs what it changes.

`TrackerStore` (tracker.py) keeps one `Snapshot`: the validated tracker exactly as the
files on disk (ledger, its key, tracker.json) last held it, with each lane's and each
agent's JSON. While the files are byte for byte what the snapshot was made from, a
read or write needs no parse and no validation of the whole tracker: an update gets a
tracker whose lanes and agents are copied on first touch (`Touched`), so afterwards it
is known which ones changed; only those are validated, checked against the state
machine and serialised again, plus the dependency graph when lanes or their
dependencies changed. The rest of the file is the snapshot's JSON, reused as is.

Nothing here touches a file: tracker.py reads and writes, this module only decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from orchestree import access_tracker as store
from orchestree.models import Agent, Lane, Tracker, check_lanes

M = TypeVar("M", bound=BaseModel)
_GROUPS = ("agents", "lanes")  # Tracker's last two fields, in this order


class Touched(dict[str, M]):
    """A dict of models that copies a model the first time it is looked up, so the
    originals (shared with the snapshot and with earlier readers) never change, and
    `touched` names every key that may have."""

    def __init__(self, items: Mapping[str, M]) -> None:
        super().__init__(items)
        self.touched: set[str] = set()

    def _take(self, key: str) -> None:
        if key not in self.touched and dict.__contains__(self, key):
            dict.__setitem__(self, key, dict.__getitem__(self, key).model_copy(deep=True))
            self.touched.add(key)

    def __getitem__(self, key: str) -> M:
        self._take(key)
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self._take(key)
        return dict.get(self, key, default)

    def __setitem__(self, key: str, value: M) -> None:
        self.touched.add(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self.touched.add(key)
        dict.__delitem__(self, key)

    def pop(self, key: str, *default: Any) -> Any:
        self.touched.add(key)
        return dict.pop(self, key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._take(key)
        self.touched.add(key)
        return dict.setdefault(self, key, default)

    def _take_all(self) -> None:
        for key in list(dict.keys(self)):
            self._take(key)

    def values(self) -> Any:
        self._take_all()  # whoever walks every value may change any of them
        return dict.values(self)

    def items(self) -> Any:
        self._take_all()
        return dict.items(self)

    def popitem(self) -> tuple[str, M]:
        key, value = dict.popitem(self)
        self.touched.add(key)
        return key, value

    def clear(self) -> None:
        self.touched.update(dict.keys(self))
        dict.clear(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        new = dict(*args, **kwargs)
        self.touched.update(new)
        dict.update(self, new)

    def __ior__(self, other: Any) -> Touched[M]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self)


@dataclass
class Snapshot:
    """The validated tracker as `files` (key, ledger, tracker.json bytes) held it."""

    files: tuple[bytes | None, bytes | None, bytes | None]
    tracker: Tracker
    # "lanes"/"agents" -> id -> `"id":{...}`; made by the first write (a reader needs none)
    fragments: dict[str, dict[str, bytes]] | None
    as_written: bool = True  # tracker.json is the ledger's payload
    text: bytes = b""  # the trusted tracker's JSON, when tracker.json is not it
    ignored: list[str] = field(default_factory=list)


def make(
    files: tuple[bytes | None, bytes | None, bytes | None],
    tracker: Tracker,
    as_written: bool,
    text: bytes,
    ignored: list[str],
) -> Snapshot:
    """A snapshot of a tracker validated as a whole (the slow path, once a process or
    after another process wrote)."""
    return Snapshot(files, tracker, None, as_written, text, list(ignored))


def shared(tracker: Tracker) -> Tracker:
    """A tracker of its own dicts whose lanes and agents are `tracker`'s objects: what
    a reader gets (readers do not change what they read; writers go through update)."""
    return _with(tracker, dict(tracker.lanes), dict(tracker.agents))


def _with(tracker: Tracker, lanes: dict[str, Lane], agents: dict[str, Agent]) -> Tracker:
    fields = {**tracker.__dict__, "lanes": lanes, "agents": agents}
    return Tracker.model_construct(_fields_set=set(tracker.model_fields_set), **fields)


def for_change(snap: Snapshot) -> Tracker:
    """The snapshot's tracker for an update to change: lanes and agents copied on touch."""
    return _with(snap.tracker, Touched(snap.tracker.lanes), Touched(snap.tracker.agents))


def touched(tracker: Tracker) -> dict[str, set[str]] | None:
    """Which lanes and agents `tracker` (from `for_change`) may have changed; None when
    a whole dict was replaced (then everything is checked)."""
    groups = {"lanes": tracker.lanes, "agents": tracker.agents}
    if not all(isinstance(g, Touched) for g in groups.values()):
        return None
    return {name: set(g.touched) for name, g in groups.items()}  # type: ignore[attr-defined]


def check(old: Tracker, new: Tracker, changed: dict[str, set[str]]) -> None:
    """Validate what changed as a whole-tracker validation would; raises ValueError-like
    pydantic or UserError errors (the caller then validates the whole for the message),
    InvalidUpdateError for the state machine."""
    for lane_id in changed["lanes"] & new.lanes.keys():
        Lane.model_validate(new.lanes[lane_id].model_dump(warnings=False))
    for name in changed["agents"] & new.agents.keys():
        Agent.model_validate(new.agents[name].model_dump(warnings=False))
    top = {k: v for k, v in new.__dict__.items() if k not in _GROUPS}
    Tracker.model_validate(top)  # the tracker's own fields, without lanes or agents
    if _graph_may_change(old, new, changed["lanes"]):
        check_lanes(new.lanes)
    store.check_version({"version": old.version}, {"version": new.version})
    store.check_statuses(_statuses(old, changed), _statuses(new, changed))


def _graph_may_change(old: Tracker, new: Tracker, lanes: set[str]) -> bool:
    for lane_id in lanes:
        before, after = old.lanes.get(lane_id), new.lanes.get(lane_id)
        if before is None or after is None or before.depends_on != after.depends_on:
            return True
    return False


def _statuses(tracker: Tracker, changed: dict[str, set[str]]) -> dict[str, Any]:
    """The part of `tracker` that `check_statuses` reads, for the changed ids only."""
    lanes = {k: {"status": tracker.lanes[k].status} for k in changed["lanes"] if k in tracker.lanes}
    agents = {
        k: {"status": tracker.agents[k].status} for k in changed["agents"] if k in tracker.agents
    }
    return {"lanes": lanes, "agents": agents}


Fragments = dict[str, dict[str, bytes]]


def serialise(
    snap: Snapshot, new: Tracker, changed: dict[str, set[str]]
) -> tuple[bytes, Fragments]:
    """`new` as JSON, the same bytes `model_dump_json` gives, reusing the snapshot's JSON
    of every lane and agent that did not change; and the new fragments."""
    head = new.model_dump_json(exclude=set(_GROUPS)).encode()
    parts = [head[:-1]]  # one join at the end: each `+` of two 0.5 MB halves copies them
    fragments: Fragments = {}
    for name in _GROUPS:
        group: dict[str, BaseModel] = getattr(new, name)
        old = snap.fragments[name] if snap.fragments is not None else {}
        if old and list(dict.keys(group)) == list(old):
            # The same ids in the same order (the usual write): copy the old fragments
            # and redo the changed ones, so Python steps per write do not grow with
            # the lanes; only C-level copies and the join do.
            mine = dict(old)
            for key in changed[name] & mine.keys():
                mine[key] = _member(key, dict.__getitem__(group, key))
        else:
            mine = {}
            for key in dict.keys(group):
                frag = old.get(key) if key not in changed[name] else None
                mine[key] = frag or _member(key, dict.__getitem__(group, key))
        fragments[name] = mine
        parts += (b',"' + name.encode() + b'":{', b",".join(mine.values()), b"}")
    parts.append(b"}")
    return b"".join(parts), fragments


def _member(key: str, model: BaseModel) -> bytes:
    """`"key":{...}`: one member of the lanes or agents object, as JSON."""
    return json.dumps(key, ensure_ascii=False).encode() + b":" + model.model_dump_json().encode()


def settle(new: Tracker) -> Tracker:
    """`new` with plain dicts again, to keep as the next snapshot's tracker."""
    return _with(new, dict(dict.items(new.lanes)), dict(dict.items(new.agents)))
