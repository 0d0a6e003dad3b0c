"""A planner agent (`[plan] agent = …`, DESIGN.md §7) writes the plan instead of the
built-in planner; its plan is validated the same way.

It runs as a lane of kind `probe` named `planner`, from the base commit (so it sees
every probe's results), and is asked for `docs/_generated/execution_plan.json`. That
lane declares the plan as its result, so the execute phase validates the file as a plan: a
missing or invalid one fails the lane with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from orchestree.layout import GENERATED_DIR, PLAN_FILE
from orchestree.models import LaneInput, Plan
from orchestree.probes import RESULT_JSON
from orchestree.probes.agent import example_and_schema

PLANNER_LANE = "planner"
PLANNER_TASK = f"Write {PLAN_FILE} from the probes' results"

_EXAMPLE = {
    "sources": ["markers", "tests"],
    "lanes": {
        "fix-orders-sql": {
            "name": "Use bound parameters in the orders handler",
            "tasks": ["In src/orders/handler.py:88 pass order_by as a bound parameter"],
            "priority": "high",
            "agent": "<an agent>",
        },
        "test-orders-sql": {
            "name": "Test that a quote in order_by is not executed",
            "tasks": ["Add the test to tests/test_orders.py"],
            "priority": "medium",
            "depends_on": ["fix-orders-sql"],
            "agent": "<an agent>",
        },
    },
}


def is_planner_lane(lane: LaneInput) -> bool:
    """Is this lane the planner agent's (a probe whose result is the plan)?

    Told by its task, which is orchestree's, not by `results`, which its agent may write
    (docs/trust.md): a probe agent cannot make its lane pass for the planner's."""
    return lane.kind == "probe" and lane.tasks == [PLANNER_TASK]


def planner_prompt(sources: Collection[str], agents: Collection[str], default_agent: str) -> str:
    """What the planner agent is told: read the probes' results, write one plan, change
    nothing else."""
    files = "\n".join(f"- `{GENERATED_DIR}/{probe}/{RESULT_JSON}`" for probe in sources)
    example = json.dumps(_EXAMPLE, indent=2).replace("<an agent>", default_agent)
    rules = f"""You are the planner of an orchestree run. Probes have analysed this repository; \
you turn what they found into lanes, each a task that one coding agent will do in its own \
git worktree, in parallel with the others.

## What the probes found
{files}

Each holds `gaps`: `id`, `title`, `tasks`, `priority` and `paths` (the files a fix touches).

## Rules
- Analyse only. Do not change, add or delete any file except the one below.
- Write `{PLAN_FILE}` (relative to the repository root): one JSON object with
  `sources` (the probes you used) and `lanes`, an object of lane id → lane.
- Lane ids: lowercase letters, digits, '.', '_' and '-', starting with a letter or a
  digit, at most 63 characters, unique; not one of the probes' ids.
- Each lane: `name` (one line), `tasks` (steps an agent can act on alone, naming files
  and lines), `priority` ("high", "medium" or "low"), `depends_on` (ids of lanes that
  must finish first) and `agent` (one of: {", ".join(sorted(agents))}; default
  "{default_agent}").
- Lanes that change the same files must not run side by side: make the later one
  depend on the earlier (the higher priority first). Lanes that share no file need no
  dependency. `depends_on` may not form a cycle.
- The plan must validate against the schema below, or it is refused.

"""
    return rules + example_and_schema(PLAN_FILE, example, Plan)


def planner_lane(
    agent: str, sources: Collection[str], agents: Collection[str], default_agent: str
) -> dict[str, Any]:
    """The lane that runs the planner agent: a probe whose result is the plan."""
    return {
        "kind": "probe",
        "name": "planner agent",
        "agent": agent,
        "priority": "high",
        "tasks": [PLANNER_TASK],
        "results": [PLAN_FILE],
        "prompt": planner_prompt(sources, agents, default_agent),
    }
