"""`probes`, `plan` and `full` refusing bad input (one line, exit 2, nothing changed),
and `make demo` as a test (issue 5, must-show 5)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from exec_helpers import cli, git
from pipeline_helpers import (
    BIN,
    SHELL_DEFAULTS,
    SHELL_ONLY_CONFIGURED,
    lanes,
    one_line_error,
    pipeline_repo,
    probe_result,
    run,
    script_agent,
    tracker_bytes,
)

ROOT = Path(__file__).resolve().parents[1]

BAD_PROBES = [
    (
        '[probes.coverage]\nbuiltin = "coverage"\n',
        "[probes.coverage]: unknown built-in probe 'coverage' (known: inventory, markers, tests,"
        " lint)",
    ),
    (
        '[probes."Security Review"]\nprompt = "Look for injections."\n',
        "[probes.Security Review]: a probe's id is its lane's id, and lane id 'Security Review'"
        " may hold only lowercase letters",
    ),
    (
        '[probes."x.lock"]\nbuiltin = "markers"\n',
        "[probes.x.lock]: a probe's id is its lane's id, and lane id 'x.lock' ends in '.lock'",
    ),
    ('[probes.empty]\npriority = "high"\n', "[probes.empty]: needs `builtin` (one of inventory"),
    (
        '[probes.both]\nbuiltin = "markers"\nprompt = "and more"\n',
        "[probes.both]: give either `builtin` or `agent` and `prompt`, not both",
    ),
]


@pytest.mark.parametrize(("config", "why"), BAD_PROBES)
def test_a_bad_probe_in_the_config_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str, why: str
) -> None:
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1\n"}, config, init=False)

    line = one_line_error(cli(repo, "full"))

    assert line.startswith(f"orchestree: {repo / 'orchestree.toml'}: ")
    assert why in line
    assert not (repo / ".orchestration").exists()  # not even initialised
    assert git(repo, "branch", "--format=%(refname:short)") == "main"


def test_a_bad_probe_added_to_the_config_of_an_initialised_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1\n"}, SHELL_DEFAULTS)
    before = tracker_bytes(repo)
    config, why = BAD_PROBES[0]
    (repo / "orchestree.toml").write_text(SHELL_DEFAULTS + config)

    for command in ("probes", "plan", "status"):
        assert why in one_line_error(cli(repo, command))
    assert tracker_bytes(repo) == before


def test_probes_refuse_a_dirty_base_worktree_before_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SHELL_ONLY_CONFIGURED + '\n[probes.markers]\nbuiltin = "markers"\n'
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1  # TODO: a\n"}, config)
    (repo / "a.py").write_text("a = 2  # TODO: a\n")
    before = tracker_bytes(repo)

    line = one_line_error(cli(repo, "probes"), code=3)

    assert line == (
        f"orchestree: {repo} has uncommitted changes to tracked files (a.py); commit or "
        "stash them, then run the probes again (their results are merged there)"
    )
    assert tracker_bytes(repo) == before
    assert git(repo, "branch", "--format=%(refname:short)") == "main"


def test_plan_without_probe_results_says_to_run_the_probes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1\n"}, SHELL_DEFAULTS)
    before = tracker_bytes(repo)

    for args in (["plan"], ["plan", "--dry-run"]):
        line = one_line_error(cli(repo, *args))
        assert line == (
            f"orchestree: no probe results under {repo / 'docs/_generated'}; "
            "run `orchestree probes` first"
        )
    assert tracker_bytes(repo) == before
    assert not (repo / "docs/_generated/execution_plan.json").exists()


GAPS = [
    {"id": "fix-a", "title": "Fix a", "tasks": ["Fix a.py"], "priority": "high", "paths": ["a.py"]},
    {"id": "fix-b", "title": "Fix b", "tasks": ["Fix b.py"], "priority": "low", "paths": ["b.py"]},
]


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (
            {"fix-a": {"depends_on": ["fix-b"]}, "fix-b": {"depends_on": ["fix-a"]}},
            "lane dependencies form a cycle (fix-a -> fix-b -> fix-a); break it",
        ),
        ({"fix-b": {"depends_on": ["elsewhere"]}}, "'elsewhere'"),
        ({"fix-b": {"agent": "nobody"}}, "lane 'fix-b': agent 'nobody' is neither"),
        ({"fix-b": {"kind": "probe"}}, "lane 'fix-b' has kind 'probe'"),
        ({"markers": {"tasks": ["echo"]}}, "lane 'markers' is a probe's id; rename the lane"),
    ],
)
def test_a_hand_edited_plan_that_is_wrong_is_refused_and_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: dict[str, dict[str, object]], why: str
) -> None:
    files = {"docs/_generated/markers/state_probe.json": probe_result("markers", GAPS)}
    repo = pipeline_repo(tmp_path, monkeypatch, files, SHELL_DEFAULTS)
    assert cli(repo, "plan").code == 0
    plan_file = repo / "docs/_generated/execution_plan.json"
    plan = json.loads(plan_file.read_text())
    for lane_id, change in edit.items():
        plan["lanes"].setdefault(lane_id, {}).update(change)
    edited = tmp_path / "edited-plan.json"
    edited.write_text(json.dumps(plan))
    before = (tracker_bytes(repo), plan_file.read_bytes())

    line = one_line_error(cli(repo, "plan", "--from", str(edited)))

    assert line.startswith(f"orchestree: {edited}: ")
    assert why in line
    assert (tracker_bytes(repo), plan_file.read_bytes()) == before  # byte for byte


def test_full_exits_1_when_the_plan_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = """
print("found nothing worth writing down")
"""  # no state_probe.json: the probe fails, and the plan has nothing to go on
    config = SHELL_ONLY_CONFIGURED + script_agent(tmp_path, "prober", body)
    config += '\n[probes.review]\nagent = "prober"\nprompt = "Review."\n'
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1\n"}, config, init=False)

    result = cli(repo, "full")

    assert result.code == 1, result.out + result.err
    assert "plan: no probe results under" in result.out
    assert {k: v["kind"] for k, v in lanes(repo).items()} == {"review": "probe"}


def test_make_demo(tmp_path: Path) -> None:
    """`make demo`: the calc repository, `orchestree full`, and the story of the run."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(key, None)

    demo = run([sys.executable, str(ROOT / "examples/demo/run_demo.py")], ROOT, env)

    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out
    assert "Traceback" not in out
    assert "conflict           markers-calc-ops.py      conflicts in calc/ops.py" in out
    assert "- markers-calc-stats.py failed on its first attempt and succeeded on retry" in out
    assert "- markers-calc-ops.py conflicted at merge in calc/ops.py: another lane" in out
    # The conflict went back to its agent (a rework), which resolved it: merged in the run.
    assert "↻ markers-calc-ops.py: conflict rework 1 of 2 (files: calc/ops.py)" in out
    assert "gave the conflict back to its agent, which resolved it, and merged it" in out
    assert "- markers-calc-ops.py failed on its first attempt" not in out
    assert "- docs-stats waited for markers-calc-stats.py (they touch the same file)" in out
    merged = next(line for line in out.splitlines() if line.startswith("- merged into main: "))
    assert set(merged.removeprefix("- merged into main: ").split(", ")) == {
        "markers-calc-ops.py",
        "markers-calc-stats.py",
        "docs-stats",
        "tests-tests-test_ops.py",
    }
    assert "✓ markers-calc-ops.py: merged after 2 attempts" in out
    assert "✓ markers-calc-stats.py: merged after 2 attempts" in out
