from __future__ import annotations

import json
from pathlib import Path

from _probe_repos import ROOT
from orchestree import schemas
from orchestree.models import Plan, ProbeResult


def test_published_schemas_match_the_models() -> None:
    stale = schemas.stale(ROOT / "docs/schemas")
    assert stale == [], f"run `python -m orchestree.schemas` to update {stale}"


def test_published_schemas_are_the_models_schemas() -> None:
    folder = ROOT / "docs/schemas"
    probe = json.loads((folder / "state_probe.schema.json").read_text())
    plan = json.loads((folder / "execution_plan.schema.json").read_text())
    assert probe["properties"].keys() == ProbeResult.model_fields.keys()
    assert plan["properties"].keys() == Plan.model_fields.keys()
    assert probe["required"] == ["probe", "summary"]


def test_check_notices_drift_and_write_repairs_it(tmp_path: Path) -> None:
    assert schemas.main(["--out", str(tmp_path)]) == 0
    assert schemas.main(["--out", str(tmp_path), "--check"]) == 0
    target = tmp_path / "state_probe.schema.json"
    target.write_text(target.read_text().replace('"summary"', '"summmary"'))
    assert schemas.main(["--out", str(tmp_path), "--check"]) == 1
    assert schemas.stale(tmp_path) == ["state_probe.schema.json"]
