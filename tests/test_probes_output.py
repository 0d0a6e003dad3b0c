from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from _probe_repos import GIT_ENV, make_repo, probe_output, run_probe
from orchestree.errors import UserError
from orchestree.models import Gap, ProbeResult, lane_id_from, unique_lane_id
from orchestree.probes import (
    ProbeOutputError,
    agent_probe_prompt,
    check_builtin,
    load_probe_output,
    probe_argv,
    write_probe_output,
)

GOOD = {
    "probe": "security",
    "summary": "One risk.",
    "metrics": {"files": 3},
    "gaps": [
        {
            "id": "sql",
            "title": "SQL built from input",
            "tasks": ["Bind it"],
            "priority": "high",
            "paths": ["src/db.py"],
            "agent": "codex",
        }
    ],
}


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "state_probe.json"
    path.write_text(content)
    return path


def test_a_valid_file_loads(tmp_path: Path) -> None:
    result = load_probe_output(write(tmp_path, json.dumps(GOOD)))
    assert result.gaps[0].agent == "codex"
    assert result.metrics == {"files": 3}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"probe": "x", "summary": ', "not valid JSON (Expecting value at line 1 column 27)"),
        ("[1, 2]", "must hold a JSON object, not list"),
        ('{"probe": "x"}', "field 'summary' field required"),
        ('{"probe": "x", "summary": "", "extra": 1}', "unknown field 'extra'"),
        ('{"probe": "Bad Id", "summary": ""}', "field 'probe' value error, lane id 'bad id'"),
        (
            json.dumps({**GOOD, "gaps": [{"id": "a", "title": "t", "priority": "urgent"}]}),
            "field 'gaps.0.priority' input should be 'high', 'medium' or 'low'",
        ),
        (
            json.dumps({**GOOD, "gaps": [{"id": "a", "title": "t", "paths": ["/etc/passwd"]}]}),
            "path '/etc/passwd' is absolute",
        ),
        (
            json.dumps({**GOOD, "gaps": [{"id": "a", "title": "t", "paths": ["a/../../x"]}]}),
            "leaves the repository",
        ),
    ],
)
def test_bad_output_is_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ProbeOutputError) as info:
        load_probe_output(path)
    text = str(info.value)
    assert text.startswith(str(path))
    assert message in text
    assert "\n" not in text


def test_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ProbeOutputError, match=r"missing; the probe wrote no state_probe\.json"):
        load_probe_output(tmp_path / "nowhere" / "state_probe.json")


def test_gap_ids_and_paths_are_made_valid_and_unique() -> None:
    gaps = [
        {"id": "Fix the Login/Form!", "title": "a", "paths": ["./src//app.py", "src/app.py"]},
        {"id": "fix-the-login-form", "title": "b", "paths": ["."]},
        {"id": "x" * 70 + ".lock", "title": "c"},
    ]
    result = ProbeResult.model_validate({"probe": "p", "summary": "", "gaps": gaps})
    ids = [g.id for g in result.gaps]
    assert ids[:2] == ["fix-the-login-form", "fix-the-login-form-2"]
    assert len(ids[2]) <= 63
    assert not ids[2].endswith(".lock")
    assert result.gaps[0].paths == ["src/app.py"]
    assert result.gaps[1].paths == ["."]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("src/App.py", "src-app.py"),
        ("..hidden..name..", "hidden.name"),
        ("--x--", "x"),
        ("a.lock", "a-lock"),
        ("", "gap"),
        ("日本", "gap"),
    ],
)
def test_lane_id_from(text: str, expected: str) -> None:
    assert lane_id_from(text) == expected


def test_unique_lane_id_stays_short() -> None:
    taken = {"a" * 63}
    assert unique_lane_id("a" * 63, taken) == "a" * 61 + "-2"
    assert unique_lane_id("a" * 63, taken) == "a" * 61 + "-3"


def test_written_output_loads_back_and_has_a_summary(tmp_path: Path) -> None:
    result = ProbeResult(
        probe="p",
        summary="Found one.",
        metrics={"n": 1, "files": {"a.py": 2}, "list": list(range(12))},
        gaps=[Gap(id="g", title="Fix | it", tasks=["do"], paths=["a.py"])],
    )
    path = write_probe_output(tmp_path / "out", result)
    assert load_probe_output(path) == result
    md = (tmp_path / "out/state_probe.md").read_text()
    assert "| medium | `g` | Fix \\| it | `a.py` |" in md
    assert "… and 2 more" in md


def test_agent_probe_prompt_says_where_and_embeds_the_schema() -> None:
    prompt = agent_probe_prompt("security", "Look for injection risks.", "docs/_generated/security")
    assert "Look for injection risks." in prompt
    assert "`docs/_generated/security/state_probe.json`" in prompt
    assert '"probe" = "security"' in prompt or '`probe` = "security"' in prompt
    schema = prompt.split("## JSON Schema of state_probe.json\n```json\n")[1].split("```")[0]
    assert json.loads(schema) == ProbeResult.model_json_schema()
    example = prompt.split("## Example of state_probe.json\n```json\n")[1].split("```")[0]
    assert ProbeResult.model_validate_json(example).probe == "security"


def test_entry_point_refuses_a_bad_probe_id_and_an_unknown_builtin(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    bad = run_probe(repo, "markers", probe_id="Bad/Id")
    assert bad.returncode == 2
    assert "lane id 'Bad/Id' contains a slash" in bad.stderr
    unknown = run_probe(repo, "coverage")
    assert unknown.returncode == 2
    assert "invalid choice: 'coverage'" in unknown.stderr


def test_entry_point_outside_a_repository_fails_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    proc = run_probe(tmp_path / "plain", "markers")
    assert proc.returncode == 1
    assert proc.stderr.startswith("probe markers (markers) failed: `git")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_probe_argv_is_what_the_runner_launches(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1  # XXX: why one\n"})
    argv = probe_argv("markers", "todo", timeout_s=30)
    assert argv[1:] == [
        *("-m", "orchestree.probes", "markers", "--root", "."),
        *("--out", "docs/_generated/todo", "--probe-id", "todo", "--timeout-s", "30"),
    ]
    subprocess.run(argv, cwd=repo, check=True, env={**os.environ, **GIT_ENV})
    assert probe_output(repo, "todo").metrics["by_marker"]["XXX"] == 1


def test_unknown_builtin_and_bad_probe_id_are_user_errors() -> None:
    with pytest.raises(UserError, match=r"unknown built-in probe 'coverage' \(known: inventory"):
        check_builtin("coverage", "orchestree.toml: [probes.cov]")
    with pytest.raises(UserError, match="lane id 'My Probe'"):
        probe_argv("lint", "My Probe")
