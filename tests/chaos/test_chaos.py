"""The chaos suite: seeded runs of real lanes under faults, then the invariants.

    make chaos                      # seeds 1..52, then the named (hostile) scenarios
    make chaos SEEDS=200            # seeds 1..200; SEEDS=40-60 or SEEDS=3,17 also work
    CHAOS_SEED=17 make chaos        # replay one seed alone
    CHAOS_SCENARIO=hostile-setsid-daemon make chaos   # one named scenario alone
    CHAOS_FAULTS=kill-agent,disk-full make chaos      # only these fault kinds

Each run prints its plan (seed, fault, lanes) first and, when it fails, the
violations, what every command printed and the line that replays it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos_invariants import violations
from chaos_run import TALLY, ChaosRun
from chaos_scenarios import Scenario, make_plan, runs

RUNS = runs()


@pytest.mark.parametrize(
    ("seed", "scenario"), RUNS, ids=[s.name if s.seed else f"seed{n}-{s.name}" for n, s in RUNS]
)
def test_chaos_run(seed: int, scenario: Scenario, tmp_path: Path) -> None:
    plan = make_plan(seed, scenario)
    print(f"\nchaos: {plan.describe()}")
    seen = ChaosRun(plan, tmp_path).run()
    print(f"chaos: injected {seen.injected}; missed {seen.missed}; "
          f"{seen.samples} tracker samples; "
          + ", ".join(f"{c.args[0]} {c.code} {c.seconds:.1f}s" for c in seen.commands))  # fmt: skip
    found = violations(seen, scenario.invariants)
    TALLY.append(
        {"seed": seed, "scenario": scenario.name, "injected": [i["fault"] for i in seen.injected],
         "missed": seen.missed, "violated": sorted({v.split("]")[0][1:] for v in found})}
    )  # fmt: skip
    replay = (
        f"CHAOS_SCENARIO={scenario.name}" if scenario.seed else f"CHAOS_SEED={seed}"
    ) + " make chaos"
    assert not found, "\n".join([*found, "", seen.story(), f"replay: {replay}"])
