"""What a chaos run does, as data: the scenarios, and the plan a seed draws from one.

A `Scenario` is declarative: which faults it draws from, what its agents do (a
hostile action for one lane, or none) and which invariants must hold afterwards. The
seeded runs take the fault kinds in turn (seed N gets `FAULTS[N % len(FAULTS)]`, so 52
seeds give each of the 14 kinds four times), and everything else — lanes, their
dependencies, how long each agent sleeps, which steps it commits, `max_parallel`,
`max_attempts`, the moment of the fault — from `random.Random(seed)`. A seed therefore
replays the same run (`CHAOS_SEED=1234`); only the machine's timing varies.

Hostile scenarios (DESIGN.md §16, issue 20) are more entries of the same shape: add
one to `SCENARIOS` with its `hostile` action (implemented in `chaos_agent.hostile`)
and the invariants that must still hold.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

KILLS = (
    "kill-orchestrator",  # SIGKILL `orchestree execute`
    "kill-supervisor",  # ... a lane's supervisor
    "kill-agent",  # ... a lane's agent
    "kill-fork-server",  # ... the warm process that forks the supervisors
    "kill-verify",  # ... the `[merge] verify` command during `orchestree merge`
    "kill-merge",  # ... `orchestree merge` itself, while it verifies
)
CLOCK_STEPS = {"clock+1s": 1, "clock-1s": -1, "clock+1h": 3600, "clock-1h": -3600}
AT_MERGE = ("kill-verify", "kill-merge")  # faults that strike `merge`, not `execute`
# The orchestrator SIGKILLed, then the clock steps (±1 s or ±1 h, seeded) before the
# resume: the supervisors it left must be adopted, not killed (issue 13, must-show 2).
KILL_THEN_CLOCK = "kill-orchestrator+clock"
# The orchestrator SIGKILLed while `[worktree] pool` fills and lanes claim its spares
# (the run has `pool = 2`, `share` and a setup that takes a moment): the resume and the
# final cleanup must trip on nothing the filler, share's stock or a claim left half-done.
KILL_POOL = "kill-pool"
# `cleanup` SIGKILLed while it removes `[worktree] share`'s stale templates (the same
# run as `kill-pool`, then main moves, so the run's template is stale): a second
# cleanup must finish the job, and no template may be left marked ready but partial.
KILL_CLEANUP = "kill-cleanup"
FAULTS = (
    *KILLS, *CLOCK_STEPS, KILL_THEN_CLOCK, "disk-full", "read-only", KILL_POOL, KILL_CLEANUP
)  # fmt: skip

# Every run: the invariants the issue lists, plus "every command ends cleanly".
BASE_INVARIANTS = (
    "tracker-parses",
    "no-overlap",
    "commits-reachable",
    "terminal",
    "base-forward",
    "killed-named",
    "no-leftovers",
    "clean-exits",
    "notified-once",
)
# A fault that must cost nothing: every lane's agent ran once, to its end, and merged.
HARMLESS = (*BASE_INVARIANTS, "harmless")
# A hostile agent: it acted, and the run ended as if it had not.
HOSTILE = (*HARMLESS, "hostile-acted")
# An orchestrator killed: the agents running then are adopted and run to their end.
ADOPTING = (*BASE_INVARIANTS, "adopted")


@dataclass(frozen=True)
class Scenario:
    """A kind of chaos run: the faults it draws from, its agents, its invariants."""

    name: str
    faults: tuple[str, ...]
    invariants: tuple[str, ...] = BASE_INVARIANTS
    hostile: str | None = None  # what one lane's agent does (chaos_agent.hostile)
    seed: int = 0  # the fixed seed of a named scenario
    hostile_all: bool = False  # every lane's agent does it, not one
    hostile_set: bool = False  # issue 20's whole hostile set runs beside the seed's lanes


def fault_scenario(kind: str) -> Scenario:
    """The seeded runs' scenario for one fault kind."""
    if kind in CLOCK_STEPS:
        return Scenario(kind, (kind,), HARMLESS)
    if kind in ("kill-orchestrator", KILL_THEN_CLOCK):
        return Scenario(kind, (kind,), ADOPTING)
    if kind == KILL_POOL:
        return Scenario(kind, (kind,), (*ADOPTING, "pool-swept"))
    if kind == KILL_CLEANUP:
        return Scenario(kind, (kind,), (*BASE_INVARIANTS, "pool-swept", "templates-swept"))
    return Scenario(kind, (kind,), BASE_INVARIANTS)


# Issue 20's whole hostile set (tests/hostile_agents.py: SCENARIOS and FORGERS, one
# lane each) beside the seed's honest lanes, in one execute + merge + cleanup
# (chaos_hostile.py): what the agents did must cost the user nothing.
HOSTILE_SET = (
    *BASE_INVARIANTS,
    "hostile-acted",
    "hostile-outcome",
    "outside-intact",
    "user-files-intact",
    "nothing-unplanned",
    "decoy-alive",
    "shown-as-text",
    "honest-merged",
)
HOSTILE_SET_LANES = 4  # max_parallel: `liar` and `victim` must run at the same time

# Named scenarios beside the seeded ones: agents that attack orchestree (issue 20).
SCENARIOS = {
    s.name: s
    for s in (
        Scenario("hostile-kill-supervisor-parent", (), HOSTILE, "kill-supervisor-parent", 7),
        Scenario("hostile-tracker-garbage", (), HOSTILE, "tracker-garbage", 11),
        Scenario("hostile-setsid-daemon", (), HOSTILE, "setsid-daemon", 13),
        # Every agent leaves a `setsid` daemon, then a supervisor is SIGKILLed: the
        # daemon must end with its lane (the supervisor, its subreaper, is gone).
        Scenario(
            "setsid-daemon-supervisor-killed",
            ("kill-supervisor",),
            (*BASE_INVARIANTS, "hostile-acted"),
            "setsid-daemon",
            17,
            hostile_all=True,
        ),
        Scenario("hostile-set", (), HOSTILE_SET, seed=19, hostile_set=True),
        # ... with `execute` SIGKILLed mid-run and the clock stepped before the resume,
        Scenario(
            "hostile-set-kill-orchestrator+clock",
            (KILL_THEN_CLOCK,),
            (*HOSTILE_SET, "adopted"),
            seed=23,
            hostile_set=True,
        ),
        # ... and with the clock stepped back an hour while it runs.
        Scenario("hostile-set-clock-1h", ("clock-1h",), HOSTILE_SET, seed=29, hostile_set=True),
    )
}


@dataclass(frozen=True)
class LanePlan:
    lane_id: str
    steps: list[dict[str, Any]]  # {"sleep": s, "commit": bool} for each file it writes
    depends_on: list[str]
    max_attempts: int
    hostile: str | None = None
    script: str | None = None  # a hostile set's agent (chaos_hostile.SET) it runs instead

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "hostile": self.hostile}


@dataclass(frozen=True)
class FaultPlan:
    kind: str
    after_starts: int  # injected once this many agents (or verify runs) have started
    delay: float  # ... and this many seconds later (times verify_s for a merge fault)
    hold: float  # how long a full disk or a read-only folder lasts


@dataclass(frozen=True)
class Plan:
    seed: int
    scenario: Scenario
    lanes: list[LanePlan]
    max_parallel: int
    verify_s: float
    faults: list[FaultPlan] = field(default_factory=list)
    clock_step: int = 0  # for KILL_THEN_CLOCK: the step, in seconds

    def describe(self) -> str:
        faults = ", ".join(
            f"{f.kind} after {f.after_starts} start(s) +{f.delay:.2f}s" for f in self.faults
        )
        lanes = " ".join(
            f"{lane.lane_id}(x{len(lane.steps)}, {sum(s['sleep'] for s in lane.steps):.1f}s"
            f"{', after ' + '+'.join(lane.depends_on) if lane.depends_on else ''}"
            f", {lane.max_attempts} attempts{', ' + lane.hostile if lane.hostile else ''})"
            for lane in self.lanes
        )
        return (
            f"seed {self.seed} [{self.scenario.name}]: {faults or 'no fault'}; "
            f"max_parallel {self.max_parallel}; lanes {lanes}"
        )


def make_plan(seed: int, scenario: Scenario) -> Plan:
    """The run `seed` draws for `scenario` (deterministic)."""
    rng = random.Random(seed)
    n = rng.randint(3, 5)
    lanes = []
    for i in range(n):
        budget = rng.uniform(0.2, 2.0)
        count = rng.randint(1, 3)
        steps = [
            {"sleep": round(budget / count, 3), "commit": rng.random() < 0.6} for _ in range(count)
        ]
        deps = [f"l{rng.randrange(i)}"] if i and rng.random() < 0.3 else []
        lanes.append(LanePlan(f"l{i}", steps, deps, rng.randint(1, 3)))
    if scenario.hostile:
        victims = range(n) if scenario.hostile_all else [rng.randrange(n)]
        for victim in victims:
            lane = lanes[victim]
            lanes[victim] = LanePlan(
                lane.lane_id, lane.steps, lane.depends_on, lane.max_attempts, scenario.hostile
            )
    faults = [
        FaultPlan(
            kind,
            # A merge fault strikes the first verify run: with batched verify (the
            # default, `[merge] batch = 8`) one run checks every lane, so waiting for a
            # second or third run would often wait for one that never comes.
            after_starts=_first_if_at_merge(kind, rng.randint(1, min(n, 3))),
            delay=round(rng.uniform(0.0, 0.4), 3),
            hold=round(rng.uniform(0.3, 1.5), 3),
        )
        for kind in scenario.faults
    ]
    step = rng.choice(sorted(CLOCK_STEPS.values()))
    parallel, verify_s = rng.randint(2, 3), round(rng.uniform(0.1, 0.4), 3)
    if scenario.hostile_set:
        from chaos_hostile import SET  # here: chaos_hostile imports this module

        # Two honest lanes beside it: each lane costs a `merge --lane` (chaos_hostile).
        lanes = [LanePlan(name, [], [], 1, script=name) for name in SET] + lanes[:2]
        parallel = HOSTILE_SET_LANES
    return Plan(seed, scenario, lanes, parallel, verify_s, faults, step)


def _first_if_at_merge(kind: str, starts: int) -> int:
    return 1 if kind in AT_MERGE else starts  # the draw is made either way: seeds replay


def chosen_faults() -> tuple[str, ...]:
    """`CHAOS_FAULTS=kill-agent,disk-full` narrows the kinds (for development only)."""
    wanted = os.environ.get("CHAOS_FAULTS", "").strip()
    if not wanted:
        return FAULTS
    kinds = tuple(k.strip() for k in wanted.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown:
        raise ValueError(f"CHAOS_FAULTS: unknown fault {', '.join(unknown)}; known: {FAULTS}")
    return kinds


def seeds() -> list[int]:
    """`CHAOS_SEED=1234` replays one seed; `CHAOS_SEEDS=52` runs seeds 1..52, `=A-B` a
    range, `=3,17` a list. Default: 60 (each of the 15 fault kinds four times)."""
    one = os.environ.get("CHAOS_SEED", "").strip()
    if one:
        return [int(one)]
    spec = os.environ.get("CHAOS_SEEDS", "").strip() or "60"
    if "," in spec:
        return [int(s) for s in spec.split(",") if s.strip()]
    if "-" in spec:
        low, high = spec.split("-", 1)
        return list(range(int(low), int(high) + 1))
    return list(range(1, int(spec) + 1))


def seeded_scenario(seed: int) -> Scenario:
    kinds = chosen_faults()
    return fault_scenario(kinds[seed % len(kinds)])


def runs() -> list[tuple[int, Scenario]]:
    """The runs to make: the seeded ones, then the named scenarios. `CHAOS_SEED` replays
    one seed alone; `CHAOS_SCENARIO=hostile-setsid-daemon` runs one named scenario."""
    name = os.environ.get("CHAOS_SCENARIO", "").strip()
    if name:
        if name not in SCENARIOS:
            raise ValueError(f"CHAOS_SCENARIO: no scenario {name!r}; known: {sorted(SCENARIOS)}")
        return [(SCENARIOS[name].seed, SCENARIOS[name])]
    seeded = [(seed, seeded_scenario(seed)) for seed in seeds()]
    if os.environ.get("CHAOS_SEED", "").strip():
        return seeded
    return seeded + [(s.seed, s) for _, s in sorted(SCENARIOS.items())]
