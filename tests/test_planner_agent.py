"""A planner agent (`[plan] agent = …`) writes the plan instead of the built-in planner,
and its plan is validated the same way (DESIGN.md §7)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from exec_helpers import cli, git, spawn, wait_for
from orchestree.models import Plan
from orchestree.planner import read_plan
from pipeline_helpers import (
    SHELL_DEFAULTS,
    SHELL_ONLY_CONFIGURED,
    base_is_clean,
    lanes,
    one_line_error,
    pipeline_repo,
    probe_result,
    script_agent,
    tracker_bytes,
)

# Writes docs/_generated/execution_plan.json from every probe's gaps: one lane per gap,
# each after the one before; or a broken plan, by PLANBOT_MODE. Keeps its prompt.
PLANBOT = """
mode = os.environ.get("PLANBOT_MODE", "good")
prompt = Path(os.environ["ORCHESTREE_PROMPT_FILE"]).read_text()
(Path(os.environ["ORCHESTREE_TRACKER"]).parents[2] / "planner-prompt.md").write_text(prompt)
if mode == "crash":
    sys.exit("the model is unavailable")
if mode == "slow":
    time.sleep(60)
plan, before = {"sources": [], "lanes": {}}, []
for found in sorted(Path("docs/_generated").glob("*/state_probe.json")):
    result = json.loads(found.read_text())
    plan["sources"].append(result["probe"])
    for gap in result["gaps"]:
        plan["lanes"]["do-" + gap["id"]] = {
            "name": gap["title"], "tasks": gap["tasks"], "priority": gap["priority"],
            "depends_on": before[-1:], "agent": os.environ.get("PLANBOT_AGENT", "shell")}
        before.append("do-" + gap["id"])
if mode == "cycle":
    plan["lanes"][before[0]]["depends_on"] = [before[-1]]
if mode == "unknown-agent":
    plan["lanes"][before[0]]["agent"] = "nobody"
out = Path("docs/_generated/execution_plan.json")
if mode == "not-json":
    out.write_text('{"lanes": ')
elif mode != "none":
    out.write_text(json.dumps(plan, indent=2))
"""

GAPS = [
    {"id": "g1", "title": "Name a", "tasks": ["Rename a"], "priority": "high", "paths": ["a.py"]},
    {"id": "g2", "title": "Test a", "tasks": ["Test a"], "priority": "low", "paths": ["t.py"]},
]


def _repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str = "good") -> Path:
    config = SHELL_DEFAULTS + '\n[plan]\nagent = "planbot"\n'
    config += script_agent(tmp_path, "planbot", PLANBOT) + f'env = {{ PLANBOT_MODE = "{mode}" }}\n'
    files = {"docs/_generated/markers/state_probe.json": probe_result("markers", GAPS)}
    return pipeline_repo(tmp_path, monkeypatch, files, config)


def test_the_planner_agent_writes_the_plan_that_is_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch)

    result = cli(repo, "plan")

    assert result.code == 0, result.out + result.err
    assert "plan: 2 lane(s), 2 registered" in result.out
    registered = lanes(repo)
    assert sorted(registered) == ["do-g1", "do-g2"]  # the planner's own lane is gone
    assert registered["do-g2"]["depends_on"] == ["do-g1"]
    assert {lane["kind"] for lane in registered.values()} == {"lane"}
    plan = read_plan(repo / "docs/_generated/execution_plan.json")
    assert list(plan.lanes) == ["do-g1", "do-g2"]
    assert plan.sources == ["markers"]
    assert json.loads(tracker_bytes(repo))["phase"] == 2
    assert git(repo, "branch", "--list", "lane-planner") == ""
    assert not (repo / ".worktrees" / "agent-planner").exists()
    assert base_is_clean(repo)
    prompt = (tmp_path / "planner-prompt.md").read_text()
    assert "Write `docs/_generated/execution_plan.json`" in prompt
    assert "- `docs/_generated/markers/state_probe.json`" in prompt
    assert "one of: shell;" in prompt  # the default, and [plan] allow_agents (none here)


def test_plan_dry_run_with_a_planner_agent_registers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch)

    result = cli(repo, "plan", "--dry-run", "--json")

    assert result.code == 0, result.err
    assert list(Plan.model_validate_json(result.out).lanes) == ["do-g1", "do-g2"]
    assert lanes(repo) == {}
    assert not (repo / "docs/_generated/execution_plan.json").exists()


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("cycle", "execution_plan.json: lane dependencies form a cycle (do-g1 -> do-g2 -> do-g1)"),
        ("not-json", "docs/_generated/execution_plan.json: not valid JSON"),
        ("none", "docs/_generated/execution_plan.json: missing; the planner agent wrote no plan"),
        ("crash", "exited with code 1: the model is unavailable"),
    ],
)
def test_a_bad_plan_from_the_planner_agent_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, why: str
) -> None:
    repo = _repo(tmp_path, monkeypatch, mode)

    line = one_line_error(cli(repo, "plan"))

    assert line.startswith("orchestree: the planner agent 'planbot' gave no usable plan: ")
    assert why in line
    assert line.endswith("(log: .orchestration/logs/agent-planner.log); nothing was registered")
    assert {k: v["status"] for k, v in lanes(repo).items()} == {"planner": "failed"}
    assert not (repo / "docs/_generated/execution_plan.json").exists()
    assert base_is_clean(repo)


def test_a_plan_naming_an_unknown_agent_is_refused_and_a_fixed_planner_runs_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch, "unknown-agent")

    line = one_line_error(cli(repo, "plan"))

    assert "the plan of the planner agent 'planbot': lane 'do-g1': agent 'nobody'" in line
    assert lanes(repo) == {}
    config = (repo / "orchestree.toml").read_text()
    (repo / "orchestree.toml").write_text(config.replace("unknown-agent", "good"))
    assert cli(repo, "plan").code == 0
    assert sorted(lanes(repo)) == ["do-g1", "do-g2"]


def test_ctrl_c_while_the_planner_agent_runs_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch, "slow")
    proc = spawn(repo, "plan")
    wait_for((tmp_path / "planner-prompt.md").exists, what="the planner agent to start")

    proc.send_signal(signal.SIGINT)

    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "✗ planner: cancelled" in out
    assert "Traceback" not in err
    assert {k: v["status"] for k, v in lanes(repo).items()} == {"planner": "cancelled"}
    assert not (repo / "docs/_generated/execution_plan.json").exists()


def test_a_planner_agent_cannot_choose_an_agent_the_config_does_not_allow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch)
    config = (repo / "orchestree.toml").read_text()
    (repo / "orchestree.toml").write_text(
        config.replace("PLANBOT_MODE", 'PLANBOT_AGENT = "codex", PLANBOT_MODE')
    )

    line = one_line_error(cli(repo, "plan"))

    assert line == (
        "orchestree: the plan of the planner agent 'planbot': lane 'do-g1' asks for agent "
        "'codex', which [plan] allow_agents in orchestree.toml does not list; nothing was "
        "registered"
    )
    assert lanes(repo) == {}
    assert not (repo / "docs/_generated/execution_plan.json").exists()


def test_full_with_a_planner_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixer = script_agent(
        tmp_path,
        "fixer",
        'Path("a.py").write_text("a = 1\\n")\n'
        'subprocess.run(["git", "commit", "-qam", "name a"], check=True)\n',
    )
    config = SHELL_ONLY_CONFIGURED + '\n[plan]\nagent = "planbot"\nallow_agents = ["fixer"]\n'
    config += '\n[probes.markers]\nbuiltin = "markers"\n'
    config += script_agent(tmp_path, "planbot", PLANBOT) + 'env = { PLANBOT_AGENT = "fixer" }\n'
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1  # TODO: a\n"}, config + fixer)

    result = cli(repo, "full")

    assert result.code == 0, result.out + result.err
    assert result.out.splitlines()[-3:] == [
        "summary: 1 lane: 1 merged; 1 probe: 1 merged",
        "  ✓ probe markers: merged",
        "  ✓ do-markers-a.py: merged",
    ]
    assert git(repo, "show", "main:a.py") == "a = 1"
    assert base_is_clean(repo)


@pytest.mark.slow
def test_a_planner_agent_on_a_dask_cluster(tmp_path: Path) -> None:
    """On Dask the planner's worktree is on a worker: its plan is read from its branch."""
    from lanes_dag import make_repo, orchestree

    repo = make_repo(tmp_path / "r", 'kind = "dask"\nworkers = 1\nremote = "origin"')
    results = repo / "docs/_generated/markers/state_probe.json"
    results.parent.mkdir(parents=True)
    results.write_text(probe_result("markers", GAPS))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "probe results")
    config = (repo / "orchestree.toml").read_text() + '\n[plan]\nagent = "planbot"\n'
    (repo / "orchestree.toml").write_text(config + script_agent(tmp_path, "planbot", PLANBOT))

    result = orchestree(repo, tmp_path, "plan")

    assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads((repo / ".orchestration/tracker.json").read_text())
    assert sorted(state["lanes"]) == ["do-g1", "do-g2"]
    assert list(read_plan(repo / "docs/_generated/execution_plan.json").lanes) == ["do-g1", "do-g2"]
    assert git(repo, "branch", "--list", "lane-planner") == ""
