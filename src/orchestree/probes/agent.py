"""The prompt for an agent probe: the user's question, and exactly what to write where;
its closing example and schema serve the planner agent's prompt too."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from orchestree.models import ProbeResult
from orchestree.probes.output import RESULT_JSON, RESULT_MD

_EXAMPLE = {
    "probe": "<probe id>",
    "summary": "Two handlers build SQL from request data.",
    "metrics": {"files_reviewed": 42, "findings": 2},
    "gaps": [
        {
            "id": "sql-injection-orders",
            "title": "Orders handler builds SQL from request parameters",
            "tasks": [
                "Use bound parameters in src/orders/handler.py:88 (order_by)",
                "Add a test that a quote in order_by is not executed",
            ],
            "priority": "high",
            "paths": ["src/orders/handler.py", "tests/test_orders.py"],
        }
    ],
}


def agent_probe_prompt(probe_id: str, user_prompt: str, out_dir: str | Path) -> str:
    """What an agent probe is told: analyse, change nothing, report gaps as JSON."""
    out = Path(out_dir).as_posix().rstrip("/")
    example = json.dumps({**_EXAMPLE, "probe": probe_id}, indent=2)
    rules = f"""You are the probe `{probe_id}` of an orchestree run: you analyse this repository \
and report what needs doing. Other agents will later fix each gap you report, one lane each.

## Your question
{user_prompt.strip()}

## Rules
- Analyse only. Do not change, add or delete any file except the two below.
- Write `{out}/{RESULT_JSON}` (relative to the repository root; create the folder):
  one JSON object with `probe` = "{probe_id}", a short `summary`, any `metrics` you
  measured, and `gaps`: the concrete problems you found.
- Each gap: a short `id` (lowercase letters, digits, '-', '.', '_'; unique in your
  report), a one-line `title`, `tasks` (steps another agent can act on without you,
  naming files and lines), `priority` ("high", "medium" or "low") and `paths` (the files
  or folders, relative to the repository root, that the fix will change; lanes whose
  paths overlap run one after the other, so be precise). Optionally `agent`, the agent
  that should do the fix.
- Found nothing? Write the file anyway with `"gaps": []` and say so in the summary.
- Also write `{out}/{RESULT_MD}`: a short human-readable summary of your findings.
- The JSON must validate against the schema below, or your probe is marked failed.

"""
    return rules + example_and_schema(RESULT_JSON, example, ProbeResult)


def example_and_schema(file_name: str, example: str, model: type[BaseModel]) -> str:
    """How an agent's prompt ends (the probes' and the planner's): an example of the
    JSON file it writes, then the JSON Schema that file is validated against."""
    schema = json.dumps(model.model_json_schema(), indent=2)
    return f"""## Example of {file_name}
```json
{example}
```

## JSON Schema of {file_name}
```json
{schema}
```
"""
