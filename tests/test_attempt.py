"""The attempt's contract (executors/attempt.py): the spec the launcher writes, the
result the supervisor writes; typed, versioned, and checked where they are read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exec_helpers import add_lanes, cli, make_repo, tracker
from orchestree.executors.attempt import (
    AttemptFiles,
    AttemptResult,
    AttemptSpec,
    ContractError,
    NewWorktree,
    Share,
    agent_output,
    read_result,
)
from orchestree.layout import Layout


def full_spec() -> AttemptSpec:
    """A spec with every field away from its default, nested ones included."""
    return AttemptSpec(
        lane_id="api",
        attempt=2,
        argv=["claude", "-p", "do it"],
        env={"PATH": "/usr/bin", "ORCHESTREE_PORT": "20001"},
        cwd="/repo/.worktrees/api",
        log="/repo/.orchestration/logs/api.log",
        timeout_s=90.5,
        grace_s=2.0,
        setup="make deps",
        die_with_parent=True,
        root="/repo",
        clone=True,
        register=NewWorktree("lane-api", "abc123"),
        includes=[".env"],
        helper="/repo/.orchestration/access_tracker.py",
        setup_snapshot="/repo/.orchestration/runs/api.setup.json",
        share=Share("/repo/.orchestration/share", "abc123", ["node_modules"], "0123456789abcdef"),
        sandbox={"kind": "bwrap", "network": False, "writable": ["/home/u/.claude"]},
        branch="lane-api",
        start_commit="abc123",
        commit_message="orchestree: work left uncommitted by lane api (attempt 2)",
        keep_out=[".orchestration", ".worktrees", ".env"],
    )


def full_result() -> AttemptResult:
    return AttemptResult(
        reason="timeout",
        exit_code=-15,
        error="timed out",
        agent_pid=4242,
        started_at="2026-01-01T00:00:00.000Z",
        finished_at="2026-01-01T00:01:30.000Z",
        committed=True,
        head="def456",
        changed=["src/a.py", "docs/b.md"],
        commit_error=None,
        refs_restored=["refs/heads/main"],
        timings={"commit": 0.25},
        host="node-1",
        worker="tcp://10.0.0.2:4000",
        output="working…\n",
    )


def test_spec_and_result_round_trip_with_their_version() -> None:
    spec, result = full_spec(), full_result()
    assert AttemptSpec.from_json(spec.to_json()) == spec
    assert AttemptResult.from_json(result.to_json()) == result
    assert json.loads(spec.to_json())["version"] == AttemptSpec.VERSION == 1
    assert json.loads(result.to_json())["version"] == AttemptResult.VERSION == 1
    # Whole numbers are valid seconds, and stay floats once read.
    text = json.dumps({**json.loads(spec.to_json()), "timeout_s": 60})
    assert AttemptSpec.from_json(text).timeout_s == 60.0


def test_another_version_is_refused_with_one_line_naming_both() -> None:
    for version in (99, 0, "1", None):
        data = {**json.loads(full_spec().to_json()), "version": version}
        if version is None:
            del data["version"]
        with pytest.raises(ContractError) as caught:
            AttemptSpec.from_json(json.dumps(data))
        message = str(caught.value)
        assert message.startswith(f"attempt spec version {version!r} is unknown here")
        assert "reads version 1" in message
        assert "\n" not in message
    data = {**json.loads(full_result().to_json()), "version": 2}
    with pytest.raises(ContractError, match=r"^attempt result version 2 is unknown here"):
        AttemptResult.from_json(json.dumps(data))


def _changed(**fields: Any) -> str:
    return json.dumps({**json.loads(full_spec().to_json()), **fields})


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (_changed(surprise=1), "attempt spec: unknown key 'surprise'"),
        (
            json.dumps({k: v for k, v in json.loads(full_spec().to_json()).items() if k != "cwd"}),
            "attempt spec: missing key 'cwd'",
        ),
        (_changed(attempt="2"), "attempt spec: attempt: expected int, got str"),
        (_changed(attempt=True), "attempt spec: attempt: expected int, got bool"),
        (_changed(timeout_s=None), "attempt spec: timeout_s: expected float, got null"),
        (_changed(argv="claude -p"), "attempt spec: argv: expected list, got str"),
        (_changed(argv=["claude", 3]), "attempt spec: argv[1]: expected str, got int"),
        (_changed(env={"PATH": None}), "attempt spec: env.PATH: expected str, got null"),
        (_changed(register={"branch": "lane-api"}), "attempt spec: register: missing key 'start'"),
        (
            _changed(share={**json.loads(full_spec().to_json())["share"], "x": 1}),
            "attempt spec: share: unknown key 'x'",
        ),
        (_changed(register=[]), "attempt spec: register: expected an object, got list"),
        ("[1, 2]", "attempt spec: not a JSON object"),
        ("{not json", "attempt spec: not JSON"),
    ],
)
def test_a_spec_of_another_shape_is_refused_naming_the_key(text: str, says: str) -> None:
    with pytest.raises(ContractError) as caught:
        AttemptSpec.from_json(text)
    assert str(caught.value).startswith(says)
    assert "\n" not in str(caught.value)


def test_a_result_must_name_a_known_reason(tmp_path: Path) -> None:
    data = {**json.loads(full_result().to_json()), "reason": "exploded"}
    with pytest.raises(ContractError, match="unknown reason 'exploded'"):
        AttemptResult.from_json(json.dumps(data))
    # Read from its file: none yet is None; one of another shape is an error outcome.
    where = tmp_path / "x.result.json"
    assert read_result(where) is None
    where.write_text(json.dumps(data), encoding="utf-8")
    got = read_result(where)
    assert got is not None
    assert (got.reason, got.error) == ("error", "attempt result: unknown reason 'exploded'")


def test_the_files_of_an_attempt_are_named_from_one_stem(tmp_path: Path) -> None:
    files = AttemptFiles(tmp_path, "api.2.")
    assert (files.spec.name, files.result.name, files.agent.name) == (
        "api.2.spec.json", "api.2.result.json", "api.2.agent.json"
    )  # fmt: skip
    assert AttemptFiles.of_spec(files.spec) == files
    assert AttemptFiles.of_spec(tmp_path / "spec.json") == AttemptFiles(tmp_path)
    assert AttemptFiles.of_spec(tmp_path / "api.json") is None


def test_the_agents_words_leave_out_the_supervisors_lines() -> None:
    log = "orchestree: worktree setup: make\nreal output\norchestree: ending the agent\nend"
    assert agent_output(log) == "real output\nend"


def test_the_supervisor_refuses_a_spec_of_another_version_in_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "agent-ran"
    spec = AttemptSpec("api", 1, ["touch", str(marker)], {"PATH": "/usr/bin:/bin"},
                       str(tmp_path), str(tmp_path / "agent.log"), 30.0, 0.5)  # fmt: skip
    files = AttemptFiles(tmp_path, "api.1.")
    files.spec.write_text(json.dumps({**json.loads(spec.to_json()), "version": 99}))
    proc = subprocess.run(
        [sys.executable, "-m", "orchestree.executors.supervisor", str(files.spec)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "attempt spec version 99 is unknown here" in proc.stderr
    assert "Traceback" not in proc.stderr
    result = read_result(files.result)
    assert result is not None
    assert result.reason == "error"
    assert str(result.error).startswith("attempt spec version 99")
    assert not marker.exists()  # refused before anything ran


def test_a_lane_whose_spec_has_another_version_fails_with_that_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher writes version 99 (this process); the supervisor it starts, a
    Python of its own, reads version 1: the lane fails with its one line."""
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"work": {"tasks": ["touch done.txt"]}})
    monkeypatch.setattr(AttemptSpec, "VERSION", 99)
    run = cli(repo, "execute")
    assert run.code == 1, run.out + run.err
    lane = tracker(repo)["lanes"]["work"]
    assert lane["status"] == "failed"
    assert lane["error"] == (
        "attempt spec version 99 is unknown here (this orchestree reads version 1): "
        "another orchestree wrote it; retry the lane with this one"
    )
    assert lane["attempts"] == 1
    log = Layout(repo).log("work").read_text(encoding="utf-8")
    for said in (run.out, run.err, log):
        assert "Traceback" not in said
    assert "attempt spec version 99 is unknown here" in run.out
    assert not (repo / ".worktrees" / "work" / "done.txt").exists()
