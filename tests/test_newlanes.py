"""`add-lane` without the models (newlanes.py) adds what the models add, and leaves the
rest to them: both paths run on the same inputs, through the real entry point, and
their output, exit code, lanes and event are compared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers import cli, make_repo, set_git_identity
from orchestree import lane_ops, newlanes, schemas
from orchestree.models import LaneInput
from orchestree.repo import Repo

CONFIG = '[agents.mine]\ncommand = ["true"]\n'
FIELDS = sorted(LaneInput.model_fields)
IDS = ["a", "b", "x", "y", "z", "new.1", "A", "-a", "a..b", "a.lock", "a/b", ""]
WORDS = ["high", "medium", "low", "lane", "probe", "none", "bwrap", "claude", "mine", "nope"]


class Pair:
    """Two repositories in the same state: the light path may act in `light`; `full`
    has no ledger, so every command there takes the models' path."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.by_models: list[Path] = []  # the repositories `add-lane` took the full path in
        self.light, self.full = (self._repo(root / name) for name in ("light", "full"))
        shutil.rmtree(self.full / ".orchestration" / "ledger")
        self.saved = {r: root / f"{r.name}.saved" for r in (self.light, self.full)}
        for repo, saved in self.saved.items():
            shutil.copytree(repo / ".orchestration", saved)

    def _repo(self, path: Path) -> Path:
        repo = make_repo(path)
        (repo / "orchestree.toml").write_text(CONFIG, "utf-8")
        lanes = {"x": {"tasks": ["t"]}, "y": {"depends_on": ["x"]}, "z": {"priority": "low"}}
        for argv in (["init"], ["add-lane", "--from", self._file(path, lanes)], ["cancel", "z"]):
            assert cli(self.capsys, *argv, "--repo", str(repo))[0] == 0, argv
        return repo

    def _file(self, where: Path, lanes: Any) -> str:
        file = where.parent / f"{where.name}.json"
        file.write_text(json.dumps(lanes), "utf-8")
        return str(file)

    def restore(self) -> None:
        for repo, saved in self.saved.items():
            shutil.rmtree(repo / ".orchestration")
            shutil.copytree(saved, repo / ".orchestration")

    def add(self, repo: Path, lanes: Any, replace: bool) -> tuple[Any, ...]:
        """`add-lane --from` in `repo`: what it printed and exited with, the lanes, and
        the event it recorded (without its time and pid)."""
        argv = ["add-lane", "--from", self._file(repo, lanes), "--repo", str(repo)]
        code, out, err = cli(self.capsys, *argv, *(["--replace"] if replace else []))
        tracker = json.loads((repo / ".orchestration" / "tracker.json").read_text("utf-8"))
        events = (repo / ".orchestration" / "events.jsonl").read_text("utf-8").splitlines()
        last = {k: v for k, v in json.loads(events[-1]).items() if k not in ("ts", "pid")}
        return code, out, err.replace(str(repo), "REPO"), tracker["lanes"], last


@pytest.fixture
def pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Pair:
    set_git_identity(monkeypatch)
    made = Pair(tmp_path, capsys)
    models_add = lane_ops.add_lanes

    def counted(repo: Repo, *args: Any, **kwargs: Any) -> list[str]:
        made.by_models.append(repo.root)  # this call took the models' path
        return models_add(repo, *args, **kwargs)

    monkeypatch.setattr(lane_ops, "add_lanes", counted)
    return made


def values() -> st.SearchStrategy[Any]:
    """What a user might give a field: right and wrong types, edges, known words."""
    ids = st.lists(st.sampled_from(IDS), max_size=3)
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=4), st.sampled_from(WORDS),
    )  # fmt: skip
    return st.one_of(scalars, ids, st.lists(st.text(max_size=3), max_size=3), st.just({}))


def likely() -> dict[str, st.SearchStrategy[Any]]:
    """Per field, values of about the right kind: most valid, some at or past an edge."""
    texts = st.lists(st.text(max_size=3), max_size=2)
    number = st.one_of(st.none(), st.integers(-1, 3), st.floats(-1, 1e9, allow_nan=False))
    return {
        "name": st.text(max_size=3), "tasks": texts, "results": texts,
        "priority": st.sampled_from(WORDS[:4]), "parallel": st.booleans(),
        "depends_on": st.lists(st.sampled_from(["x", "y", "z", "a", "b", "A"]), max_size=2),
        "agent": st.sampled_from([None, "claude", "mine", "nope"]),
        "kind": st.sampled_from(["lane", "probe", "gap"]),
        "prompt": st.none() | st.text(max_size=3),
        "timeout_s": number, "max_attempts": number, "budget_usd": number,
        "sandbox": st.sampled_from([None, "none", "bwrap", "box"]),
    }  # fmt: skip


def lanes() -> st.SearchStrategy[dict[str, Any]]:
    fields = st.dictionaries(st.sampled_from([*FIELDS, "unknown"]), values(), max_size=4)
    near = st.fixed_dictionaries({}, optional=likely())
    lane = st.one_of(near, near, fields, st.integers(), st.lists(st.text(max_size=2), max_size=1))
    new = st.sampled_from(["a", "b", "c", "new.1"])  # most often: lanes the tracker lacks
    return st.dictionaries(new | new | st.sampled_from(IDS), lane, min_size=1, max_size=3)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lanes(), st.booleans())
def test_the_light_path_adds_what_the_models_add(
    pair: Pair, given_lanes: Any, replace: bool
) -> None:
    pair.restore()
    pair.by_models.clear()
    light = pair.add(pair.light, given_lanes, replace)
    full = pair.add(pair.full, given_lanes, replace)
    assert light == full
    assert pair.full in pair.by_models
    took = pair.light not in pair.by_models
    event("the light path added them" if took else "the models decided")
    if took:
        assert full[0] == 0  # what the models refuse, the light path never takes
    elif full[0] == 0 and not set(given_lanes) & {"x", "y", "z"}:
        # New, valid lanes: only a value the models convert leaves them to the models.
        checked = newlanes.checked_lanes(given_lanes, newlanes.load_contract(), frozenset({"mine"}))
        assert checked is None, given_lanes


def test_every_field_a_lane_may_have_is_added_lightly_as_the_models_add_it(pair: Pair) -> None:
    """Valid lanes that use every field: the light path takes them (no models needed),
    and the lanes written are the models' lanes, field for field."""
    given_lanes = {
        "new.1": {"name": "N", "tasks": ["t", "u"], "results": ["r"], "priority": "high",
                  "parallel": False, "depends_on": ["x", "y"], "agent": "mine", "kind": "lane",
                  "prompt": "p", "timeout_s": 5, "max_attempts": 2, "budget_usd": 0.5,
                  "sandbox": "bwrap"},
        "b": {"agent": "codex", "timeout_s": 1.5, "depends_on": ["new.1"], "sandbox": None},
    }  # fmt: skip
    checked = newlanes.checked_lanes(given_lanes, newlanes.load_contract(), frozenset({"mine"}))
    assert checked is not None
    assert checked["new.1"]["timeout_s"] == 5.0
    assert isinstance(checked["new.1"]["timeout_s"], float)
    for replace in (False, True):
        pair.restore()
        light = pair.add(pair.light, given_lanes, replace)
        assert light == pair.add(pair.full, given_lanes, replace)
        assert light[0] == 0
        assert light[3]["new.1"]["order"] == 3
    pair.restore()
    redefine = {"x": {"tasks": ["again"]}}  # pending, never run: --replace redefines it
    light = pair.add(pair.light, redefine, True)
    assert light == pair.add(pair.full, redefine, True)
    assert (light[0], light[3]["x"]["tasks"], light[3]["x"]["order"]) == (0, ["again"], 0)
    assert pair.by_models == [pair.full] * 3


def test_the_lane_contract_is_the_models(tmp_path: Path) -> None:
    assert schemas.main(["--lane-contract", str(newlanes.CONTRACT), "--check"]) == 0, (
        "run `python -m orchestree.schemas --lane-contract`"
    )
    copy = tmp_path / "contract.json"
    assert schemas.main(["--lane-contract", str(copy)]) == 0
    copy.write_text(copy.read_text("utf-8").replace('"medium"', '"middle"'), "utf-8")
    assert schemas.main(["--lane-contract", str(copy), "--check"]) == 1


def test_a_contract_with_a_rule_or_validator_it_does_not_know_leaves_lanes_to_the_models() -> None:
    contract = json.loads(json.dumps(newlanes.load_contract()))
    lanes = {"a": {"tasks": ["t"], "max_attempts": 2}}
    assert newlanes.checked_lanes(lanes, contract, frozenset()) is not None
    unknown_rule = json.loads(json.dumps(contract))
    unknown_rule["input"]["properties"]["tasks"]["maxItems"] = 5
    assert newlanes.checked_lanes(lanes, unknown_rule, frozenset()) is None
    unknown_validator = json.loads(json.dumps(contract))
    unknown_validator["validated"].append("tasks")
    assert newlanes.checked_lanes(lanes, unknown_validator, frozenset()) is None
    whole = json.loads(json.dumps(contract))
    whole["model_validators"].append("_check")
    assert newlanes.checked_lanes(lanes, whole, frozenset()) is None
