"""The published JSON Schemas (`docs/schemas/`), generated from the pydantic models,
and the lane contract `add-lane` checks new lanes by without them (`newlanes.py`).

python -m orchestree.schemas            # write docs/schemas/*.schema.json
python -m orchestree.schemas --check    # exit 1 when a file differs from the models
python -m orchestree.schemas --lane-contract [--check]   # src/orchestree/lane_contract.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from orchestree.models import Lane, LaneInput, Plan, ProbeResult

SCHEMA_DIR = Path("docs/schemas")
CONTRACT = Path(__file__).with_name("lane_contract.json")
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict[str, dict[str, Any]]:
    """File name → schema, for every JSON file orchestree asks others to write."""
    made: dict[str, dict[str, Any]] = {}
    for name, model in (("state_probe", ProbeResult), ("execution_plan", Plan)):
        made[f"{name}.schema.json"] = {"$schema": DIALECT, **model.model_json_schema()}
    return made


def lane_contract() -> dict[str, Any]:
    """What `add-lane` without the models needs of them: a new lane as the tracker holds
    it (every field, with its default, in the models' order), the schema of what a user
    may give, the fields with validators of their own and any validator of the whole
    model (the light path knows some and leaves the rest to the models), the presets."""
    from orchestree.config import PRESETS

    checks = LaneInput.__pydantic_decorators__
    return {
        "lane": Lane().model_dump(mode="json"),
        "input": LaneInput.model_json_schema(),
        "validated": sorted({f for v in checks.field_validators.values() for f in v.info.fields}),
        "model_validators": sorted(checks.model_validators),
        "presets": list(PRESETS),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def stale(folder: Path) -> list[str]:
    """The schema files in `folder` that are missing or differ from the models."""
    out_of_date = []
    for name, schema in schemas().items():
        file = folder / name
        if not file.is_file() or file.read_text(encoding="utf-8") != render(schema):
            out_of_date.append(name)
    return out_of_date


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        (folder / name).write_text(render(schema), encoding="utf-8")
        written.append(folder / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestree.schemas", description=__doc__)
    parser.add_argument("--out", type=Path, default=SCHEMA_DIR, help="default: docs/schemas")
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    parser.add_argument("--lane-contract", type=Path, nargs="?", const=CONTRACT, default=None,
                        help=f"the lane contract instead (default: {CONTRACT.name})")  # fmt: skip
    args = parser.parse_args(argv)
    if args.lane_contract is not None:
        return _contract(args.lane_contract, args.check)
    if args.check:
        out_of_date = stale(args.out)
        for name in out_of_date:
            print(f"{args.out / name} differs from the models; run python -m orchestree.schemas")
        return 1 if out_of_date else 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


def _contract(path: Path, check: bool) -> int:
    text = render(lane_contract())
    if not check:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return 0
    print(f"{path} differs from the models; run python -m orchestree.schemas --lane-contract")
    return 1


if __name__ == "__main__":
    sys.exit(main())
