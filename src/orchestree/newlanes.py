"""`add-lane` without pydantic: new lanes checked against the lane contract the models
generate (`lane_contract.json`: `python -m orchestree.schemas --lane-contract`), and
written in one transaction of the stdlib store (`access_tracker.transact`).

It adds only lanes it can show valid as the models would: each field against the
contract's schema, with the rules of it this module knows; the validators of the
fields it knows (`_VALIDATORS`, the functions the models call); the ids, the
dependency graph and the agents. Anything else (a rule or validator it does not know,
a value the models would convert or refuse, a lane to replace that is not a pending
one never run, a branch a reset kept) returns None: the full path
(`lane_ops.add_lanes`) then validates, names the problem, or adds the lanes. So the
lanes it writes are the ones the full path writes (tests/test_newlanes.py runs both).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from orchestree import access_tracker as store
from orchestree import fastpath, git
from orchestree.errors import UserError
from orchestree.initrepo import say_waiting
from orchestree.lanegraph import check_graph, is_lane_id
from orchestree.layout import KEPT

CONTRACT = Path(__file__).with_name("lane_contract.json")
PLAN_KEYS = frozenset({"version", "created_at", "sources", "lanes"})

_NO = object()  # a value only the models may judge
_NOTES = frozenset({"title", "default", "description"})  # no rule: said to people
# The rules of a JSON schema this module applies, by type; any other is the models'.
_RULES: dict[str, frozenset[str]] = {
    "null": frozenset(),
    "boolean": frozenset(),
    "string": frozenset({"enum"}),
    "integer": frozenset({"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}),
    "number": frozenset({"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}),
    "array": frozenset({"items"}),
}
_EXACT = 2**53  # numbers beyond it the models might round otherwise: theirs to judge


class _Doubt(Exception):
    """What the tracker holds asks for the full path (raised inside the transaction,
    so nothing is written)."""


def is_plan_shape(raw: dict[str, object]) -> bool:
    """Does this JSON object have a plan's shape (`{"lanes": {id: lane}, ...}`) rather
    than `add-lane --from`'s (`{id: lane}`)? `plan --from` and `add-lane --from` take
    either, so a file made for one works with the other."""
    lanes = raw.get("lanes")
    if not isinstance(lanes, dict) or not set(raw) <= PLAN_KEYS:
        return False
    # A lane whose id is "lanes" holds fields (tasks: a list), not lanes (all objects).
    return all(isinstance(lane, dict) for lane in lanes.values())


def add(path: Path, lanes: dict[str, Any], replace: bool) -> list[str] | None:
    """Add (or with `replace`, redefine) `lanes` in the repository at `path` as
    `lane_ops.add_lanes` would; their ids. None, with nothing written, when that needs
    the full path."""
    where = fastpath.locate(path)
    if where is None or fastpath.unedited(where.layout) is None:
        return None
    contract = load_contract()
    checked = checked_lanes(lanes, contract, where.agents)
    if checked is None or _kept(where.layout.root, checked):
        return None
    tracker = str(where.layout.tracker)
    event = {"actor": "orchestree", "event": "add-lane", "lanes": sorted(checked), "adopted": []}

    def change(data: dict[str, Any]) -> dict[str, Any]:
        return with_lanes(data, checked, contract["lane"], replace)

    try:
        with fastpath.store_errors(where.layout.tracker):
            store.transact(tracker, change, event, on_wait=say_waiting)
    except _Doubt:
        return None
    return list(checked)


@cache
def load_contract() -> dict[str, Any]:
    """The lane contract, as `python -m orchestree.schemas --lane-contract` wrote it."""
    loaded: dict[str, Any] = json.loads(CONTRACT.read_text(encoding="utf-8"))
    return loaded


def checked_lanes(
    lanes: dict[str, Any], contract: dict[str, Any], agents: frozenset[str]
) -> dict[str, dict[str, Any]] | None:
    """Lane id -> the fields given, as the models hold them (`1` for a number is `1.0`);
    None when a lane is not shown valid here."""
    if set(contract["validated"]) - set(_VALIDATORS) or contract["model_validators"]:
        return None  # a validator this module does not know: every lane is the models'
    schema = contract["input"]
    fields: dict[str, Any] = schema.get("properties", {})
    if set(schema) - _NOTES != {"type", "properties", "additionalProperties"}:
        return None
    known = agents | set(contract["presets"])
    checked = {}
    for lane_id, raw in lanes.items():
        given = _lane(lane_id, raw, fields)
        if given is None or given.get("agent", None) not in known | {None}:
            return None
        checked[lane_id] = given
    return checked


def _lane(lane_id: str, raw: Any, fields: dict[str, Any]) -> dict[str, Any] | None:
    if not is_lane_id(lane_id) or not isinstance(raw, dict) or not raw.keys() <= fields.keys():
        return None
    given = {}
    for name, value in raw.items():
        held = _value(value, fields[name])
        check = _VALIDATORS.get(name)
        if held is _NO or (check is not None and not check(held)):
            return None
        given[name] = held
    return given


def _value(value: Any, schema: dict[str, Any]) -> Any:
    """`value` as the models would hold it, when `schema` surely takes it; else `_NO`."""
    rules = set(schema) - _NOTES
    if "anyOf" in schema:
        if rules != {"anyOf"}:
            return _NO
        found = (_value(value, branch) for branch in schema["anyOf"])
        return next((held for held in found if held is not _NO), _NO)
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in _RULES or not rules - {"type"} <= _RULES[kind]:
        return _NO
    held = _typed(value, kind, schema)
    if held is _NO or ("enum" in schema and held not in schema["enum"]):
        return _NO
    return held if _within(held, schema) else _NO


def _typed(value: Any, kind: str, schema: dict[str, Any]) -> Any:
    """`value` if it has JSON type `kind` exactly (no conversion the models might do)."""
    if kind == "null":
        return None if value is None else _NO
    if kind == "boolean":
        return value if type(value) is bool else _NO
    if kind == "string":
        return value if type(value) is str and _encodes(value) else _NO
    if kind in ("integer", "number"):
        exact = type(value) is int and -_EXACT < value < _EXACT
        if kind == "integer":
            return value if exact else _NO
        real = exact or (type(value) is float and math.isfinite(value))
        return float(value) if real else _NO
    if type(value) is not list:
        return _NO
    items = [_value(item, schema.get("items", {})) for item in value]
    return _NO if any(item is _NO for item in items) else items


_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "minimum": lambda value, bound: value >= bound,
    "exclusiveMinimum": lambda value, bound: value > bound,
    "maximum": lambda value, bound: value <= bound,
    "exclusiveMaximum": lambda value, bound: value < bound,
}


def _within(value: Any, schema: dict[str, Any]) -> bool:
    return all(test(value, schema[rule]) for rule, test in _BOUNDS.items() if rule in schema)


def _encodes(text: str) -> bool:
    """Whether the tracker can hold `text` (a lone surrogate from JSON cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dependencies(value: list[str]) -> bool:
    """`LaneInput._ids`: each a lane id, none twice."""
    return all(is_lane_id(dep) for dep in value) and len(set(value)) == len(value)


def _results(value: list[str]) -> bool:
    """`LaneInput._results`: within the caps of an agent's own field."""
    return store.agent_field_problem("results", value) is None


# The fields with a validator of their own (the contract's `validated`), by what it
# checks: the same functions the models' validators call.
_VALIDATORS: dict[str, Callable[[Any], bool]] = {
    "depends_on": _dependencies,
    "results": _results,
}


def with_lanes(
    data: dict[str, Any], checked: dict[str, dict[str, Any]], new: dict[str, Any], replace: bool
) -> dict[str, Any]:
    """`data` (the tracker) with the checked lanes added as `lane_ops.add_lanes` adds
    them: every field of a `new` lane, the given ones, and the next `order` (a replaced
    lane keeps its own). `_Doubt` for a lane that exists (unless `replace` redefines
    one pending and never run) and for a dependency graph the models refuse."""
    lanes: dict[str, Any] = data["lanes"]
    order = max((lane["order"] for lane in lanes.values()), default=-1) + 1
    for lane_id, given in checked.items():
        existing = lanes.get(lane_id)
        if existing is not None and not (
            replace and existing["status"] == "pending" and not existing["attempts"]
        ):
            raise _Doubt(lane_id)  # the full path refuses it, or retires a merged lane
        lane = {**copy.deepcopy(new), **given}
        if existing is not None:
            lane["order"] = existing["order"]
        else:
            lane["order"], order = order, order + 1
        lanes[lane_id] = lane
    try:
        check_graph({k: lane["depends_on"] for k, lane in lanes.items()})
    except UserError:
        raise _Doubt("graph") from None
    return data


def _kept(root: Path, checked: dict[str, Any]) -> bool:
    """Whether a reset kept the branch of one of these lanes (the full path adopts it)."""
    return any(ref.rsplit("/", 1)[-1] in checked for ref in git.ref_heads(root, KEPT))
