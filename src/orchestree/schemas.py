"""The published JSON Schemas (`docs/schemas/`), generated from the pydantic models.

python -m orchestree.schemas            # write docs/schemas/*.schema.json
python -m orchestree.schemas --check    # exit 1 when a file differs from the models
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from orchestree.models import Plan, ProbeResult

SCHEMA_DIR = Path("docs/schemas")
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict[str, dict[str, Any]]:
    """File name → schema, for every JSON file orchestree asks others to write."""
    made: dict[str, dict[str, Any]] = {}
    for name, model in (("state_probe", ProbeResult), ("execution_plan", Plan)):
        made[f"{name}.schema.json"] = {"$schema": DIALECT, **model.model_json_schema()}
    return made


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
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale(args.out)
        for name in out_of_date:
            print(f"{args.out / name} differs from the models; run python -m orchestree.schemas")
        return 1 if out_of_date else 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
