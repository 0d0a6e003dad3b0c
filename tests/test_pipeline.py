"""The pipeline end to end: `probes` → `plan` → `full`, on real repositories with real
agent processes (issue 5, must-show 1, 2, 3 and re-running the probes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exec_helpers import cli, git
from orchestree.models import Plan
from orchestree.planner import read_plan
from orchestree.probes import load_probe_output
from pipeline_helpers import (
    BUGGY,
    SHELL_ONLY_CONFIGURED,
    base_is_clean,
    lanes,
    on_main,
    one_line_error,
    phases,
    pipeline_repo,
    script_agent,
    tracker_bytes,
)

BUILTINS = ("inventory", "markers", "tests", "lint")


def test_probes_land_on_main_and_plan_orders_overlapping_lanes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = pipeline_repo(tmp_path, monkeypatch, BUGGY)  # no orchestree.toml: the defaults
    start = git(repo, "rev-parse", "main")

    result = cli(repo, "probes")

    assert result.code == 0, result.out + result.err
    state = json.loads(tracker_bytes(repo))
    assert (state["phase"], state["status"]) == (1, "completed")
    for probe in BUILTINS:  # each a lane of kind probe, in its own worktree, merged
        lane = state["lanes"][probe]
        assert (lane["kind"], lane["status"], lane["agent"]) == ("probe", "merged", "shell")
        agent = state["agents"][f"agent-{probe}"]
        assert (agent["worktree"], agent["branch"]) == (
            f".worktrees/agent-{probe}",
            f"lane-{probe}",
        )
        assert git(repo, "merge-base", "--is-ancestor", f"lane-{probe}", "main") == ""
        assert f"docs/_generated/{probe}/state_probe.json" in on_main(repo, "docs/_generated")
        load_probe_output(repo / f"docs/_generated/{probe}/state_probe.json")  # validates
    assert git(repo, "rev-list", "--count", f"{start}..main", "--merges") == "4"
    assert base_is_clean(repo)

    before = tracker_bytes(repo)
    dry = cli(repo, "plan", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert tracker_bytes(repo) == before  # registers nothing
    assert not (repo / "docs/_generated/execution_plan.json").exists()
    assert json.loads(dry.out)["sources"] == ["inventory", "lint", "markers", "tests"]

    planned = cli(repo, "plan")

    assert planned.code == 0, planned.err
    plan = read_plan(repo / "docs/_generated/execution_plan.json")
    assert plan.lanes == Plan.model_validate_json(dry.out).lanes
    expected = {  # lane -> (priority, depends_on, a task naming what the probe found)
        "lint-src-util.py": ("medium", [], "src/util.py:1:8: F401"),
        "markers-src-app.py": ("low", [], "src/app.py:2: TODO: handle overflow"),
        "markers-src-util.py": ("medium", ["lint-src-util.py"], "src/util.py:5: FIXME"),
        "tests-tests-test_app.py": ("high", [], "tests/test_app.py::test_add_negative"),
    }
    registered = {k: v for k, v in lanes(repo).items() if v["kind"] == "lane"}
    assert set(registered) == set(expected) == set(plan.lanes)
    for lane_id, (priority, depends_on, task) in expected.items():
        lane = registered[lane_id]
        assert (lane["status"], lane["priority"], lane["depends_on"]) == (
            "pending",
            priority,
            depends_on,
        )
        assert any(task in t for t in lane["tasks"]), lane["tasks"]
    assert json.loads(tracker_bytes(repo))["phase"] == 2


FAULTY_PROBE = """
out = Path(os.environ["ORCHESTREE_RESULTS_DIR"])
out.mkdir(parents=True, exist_ok=True)
if lane == "good":
    gap = {"id": "guide", "title": "No user guide", "tasks": ["Write docs/guide.md"],
           "priority": "low", "paths": ["docs/guide.md"]}
    result = {"probe": lane, "summary": "no guide", "metrics": {}, "gaps": [gap]}
    (out / "state_probe.json").write_text(json.dumps(result))
elif lane == "bad-json":
    (out / "state_probe.json").write_text('{"probe": "bad-json", "gaps": [')
elif lane == "off-schema":
    (out / "state_probe.json").write_text(json.dumps({"probe": lane, "gaps": "none"}))
elif lane == "crash":
    print("the analyser fell over", file=sys.stderr)
    sys.exit(3)
"""  # "no-file" writes nothing and exits 0


def test_failing_probes_are_named_and_the_others_still_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faulty = ("bad-json", "no-file", "off-schema", "crash")
    config = SHELL_ONLY_CONFIGURED + script_agent(tmp_path, "analyser", FAULTY_PROBE)
    config += '\n[probes.markers]\nbuiltin = "markers"\n'
    for probe in ("good", *faulty):
        config += f'\n[probes.{probe}]\nagent = "analyser"\nprompt = "Find gaps."\n'
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "x = 1  # TODO: name x\n"}, config)

    result = cli(repo, "probes")

    assert result.code == 1, result.out + result.err
    state = lanes(repo)
    assert state["markers"]["status"] == state["good"]["status"] == "merged"
    why = {
        "bad-json": "state_probe.json: not valid JSON (Expecting value at line 1 column 32)",
        "no-file": "state_probe.json: missing; the probe wrote no state_probe.json",
        "off-schema": "state_probe.json: field 'summary' field required",
        "crash": "exited with code 3: the analyser fell over",
    }
    for probe, reason in why.items():
        assert state[probe]["status"] == "failed"
        assert reason in state[probe]["error"], state[probe]["error"]
        assert f"probe {probe} failed: " in result.err
    failed_lines = [line for line in result.err.splitlines() if " failed: " in line]
    assert len(failed_lines) == len(faulty)
    committed = on_main(repo, "docs/_generated")
    assert {path.split("/")[2] for path in committed} == {"good", "markers"}
    assert base_is_clean(repo)

    planned = cli(repo, "plan")

    assert planned.code == 0, planned.err
    plan = json.loads((repo / "docs/_generated/execution_plan.json").read_text())
    assert plan["sources"] == ["good", "markers"]
    assert sorted(plan["lanes"]) == ["guide", "markers-a.py"]


# The fake coding agent of `full`: fixes its file, fails, or writes a file another
# lane writes too (a conflict at merge), by lane.
FIXER = """
name = lane.removeprefix("markers-")
if lane == "markers-b.py":
    print("cannot fix b", file=sys.stderr)
    sys.exit(4)
text = Path(name).read_text()
Path(name).write_text(text.split("  #")[0] + "\\n")
if lane in ("markers-a.py", "markers-c.py"):
    Path("shared.txt").write_text(f"written by {lane}\\n")
subprocess.run(["git", "add", "-A"], check=True)
subprocess.run(["git", "commit", "-q", "-m", f"fix {name}"], check=True)
"""
FULL_CONFIG = """\
[defaults]
agent = "fixer"
kill_grace_s = 0.5
builtin_probes = false

[probes.markers]
builtin = "markers"
"""


def test_full_on_a_fresh_repository_runs_every_phase_and_sums_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {
        "a.py": "a = 1  # TODO: name a\n",
        "b.py": "b = 2  # TODO: name b\n",
        "c.py": "c = 3  # FIXME: name c\n",
        "d.py": "d = 4  # TODO: name d\n",
    }
    config = FULL_CONFIG + script_agent(tmp_path, "fixer", FIXER)
    repo = pipeline_repo(tmp_path, monkeypatch, files, config, init=False)

    result = cli(repo, "full")

    assert result.code == 1, result.out + result.err
    assert phases(repo) == [
        (1, "running"),  # probes
        (1, "completed"),
        (2, "completed"),  # plan
        (3, "running"),  # execute
        (3, "failed"),
        (4, "failed"),  # merge
    ]
    summary = result.out[result.out.index("summary: ") :].splitlines()
    log = ".orchestration/logs/agent-markers-b.py.log"
    assert summary == [
        "summary: 4 lanes: 2 merged, 1 conflict, 1 failed; 1 probe: 1 merged",
        "  ✓ probe markers: merged",
        "  ✗ markers-a.py: conflict in shared.txt (its branch is kept)",
        f"  ✗ markers-b.py: failed: exited with code 4: cannot fix b (log: {log})",
        "  ✓ markers-c.py: merged",  # a FIXME ranks before a TODO, so c merged first
        "  ✓ markers-d.py: merged",
    ]
    assert "cannot fix b" in (repo / log).read_text()
    assert git(repo, "show", "main:shared.txt") == "written by markers-c.py"
    assert git(repo, "show", "main:d.py") == "d = 4"
    assert git(repo, "show", "main:a.py") == "a = 1  # TODO: name a"
    assert base_is_clean(repo)


def test_full_exits_0_when_every_lane_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = FULL_CONFIG + script_agent(tmp_path, "fixer", FIXER)
    repo = pipeline_repo(tmp_path, monkeypatch, {"d.py": "d = 4  # TODO: d\n"}, config)

    result = cli(repo, "full")

    assert result.code == 0, result.out + result.err
    assert result.out.splitlines()[-3:] == [
        "summary: 1 lane: 1 merged; 1 probe: 1 merged",
        "  ✓ probe markers: merged",
        "  ✓ markers-d.py: merged",
    ]
    assert phases(repo)[-1] == (4, "completed")
    assert git(repo, "show", "main:d.py") == "d = 4"


FLAKY_PROBE = """
runs = Path(os.environ["ORCHESTREE_TRACKER"]).parent.parent.parent / "review.runs"
runs.write_text(runs.read_text() + "run\\n" if runs.exists() else "run\\n")
if len(runs.read_text().splitlines()) == 1:
    sys.exit("first run: no network")
out = Path(os.environ["ORCHESTREE_RESULTS_DIR"])
out.mkdir(parents=True, exist_ok=True)
(out / "state_probe.json").write_text(json.dumps(
    {"probe": lane, "summary": "fine", "metrics": {}, "gaps": []}))
"""


def test_rerunning_probes_starts_them_over_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SHELL_ONLY_CONFIGURED + script_agent(tmp_path, "reviewer", FLAKY_PROBE)
    config += '\n[probes.markers]\nbuiltin = "markers"\n'
    config += '\n[probes.review]\nagent = "reviewer"\nprompt = "Review."\n'
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1  # TODO: a\n"}, config)
    assert cli(repo, "probes").code == 1  # review fails its first run
    assert cli(repo, "plan").code == 0
    first = lanes(repo)
    assert first["review"]["status"] == "failed"
    (repo / "b.py").write_text("b = 2  # TODO: b\n")
    git(repo, "add", "b.py")
    git(repo, "commit", "-q", "-m", "another TODO")

    result = cli(repo, "probes")

    assert result.code == 0, result.out + result.err
    again = lanes(repo)
    assert again["markers"]["status"] == again["review"]["status"] == "merged"
    assert again["review"]["attempts"] == 1  # a new lane, not a retry of the failed one
    found = load_probe_output(repo / "docs/_generated/markers/state_probe.json")
    assert [g.id for g in found.gaps] == ["markers-a.py", "markers-b.py"]
    assert again["markers-a.py"] == first["markers-a.py"]  # the plan's lanes are kept
    merges = git(repo, "log", "--merges", "--format=%s", "main").splitlines()
    assert merges.count("Merge lane-markers: probe markers") == 2  # history keeps both
    assert base_is_clean(repo)


def test_a_probe_id_clashing_with_a_plan_lane_is_refused_before_any_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SHELL_ONLY_CONFIGURED + '\n[probes.markers]\nbuiltin = "markers"\n'
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1  # TODO: a\n"}, config)
    assert cli(repo, "probes").code == 0
    assert cli(repo, "add-lane", "docs", '{"tasks": ["echo docs"]}').code == 0
    (repo / "orchestree.toml").write_text(
        config + '\n[probes.docs]\nprompt = "Find missing docs."\n'
    )
    git(repo, "commit", "-qam", "a docs probe")
    before = (tracker_bytes(repo), git(repo, "for-each-ref"), git(repo, "worktree", "list"))

    line = one_line_error(cli(repo, "probes"))

    assert "probe id 'docs' is already a lane of the plan; rename the probe" in line
    # The finished markers probe (checked first) was not reset either.
    assert (tracker_bytes(repo), git(repo, "for-each-ref"), git(repo, "worktree", "list")) == before
