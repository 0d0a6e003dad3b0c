"""Issue 21, item 1: every program a command needs is checked before anything changes,
all missing ones are named in one line, and `orchestree doctor` shows it as a table."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from _probe_repos import USER_TOOLS
from exec_helpers import cli, git
from helpers import assert_one_line
from pipeline_helpers import BIN, BUGGY, SHELL_DEFAULTS, pipeline_repo

# No agent CLI on it: claude, codex, gemini and aider are all missing.
BARE_PATH = os.pathsep.join([USER_TOOLS, BIN, "/usr/local/bin", "/usr/bin", "/bin"])


def _repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str | None, init: bool = False
) -> Path:
    repo = pipeline_repo(tmp_path, monkeypatch, BUGGY, config, init=init)
    monkeypatch.setenv("PATH", BARE_PATH)
    return repo


def _state(repo: Path) -> tuple[str, str, str, bool]:
    refs = git(repo, "for-each-ref")
    return (
        refs,
        git(repo, "worktree", "list"),
        git(repo, "status", "--porcelain"),
        (repo / ".orchestration").exists(),
    )


def test_full_on_a_clone_without_config_refuses_before_changing_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch, None)
    before = _state(repo)
    done = cli(repo, "full")
    assert done.code == 3
    line = assert_one_line(done.err, "agent 'claude'", "program 'claude' not found on PATH")
    assert "nothing was started or changed" in line
    assert "`orchestree doctor`" in line
    assert _state(repo) == before  # main, branches, worktrees, files: as they were
    assert done.out == ""


def test_every_missing_program_is_named_in_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = (
        '[defaults]\nagent = "aider"\n\n[plan]\nagent = "gemini"\n\n'
        '[probes.review]\nagent = "codex"\nprompt = "Review."\n\n'
        '[merge]\nverify = "tox-that-is-not-installed -q"\n'
    )
    repo = _repo(tmp_path, monkeypatch, config)
    before = _state(repo)
    done = cli(repo, "full")
    assert done.code == 3
    assert_one_line(
        done.err,
        "program 'codex' not found",
        "program 'gemini' not found",
        "program 'aider' not found",
        "[merge] verify: program 'tox-that-is-not-installed' not found",
    )
    assert _state(repo) == before


def test_probes_and_merge_check_first_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = (
        SHELL_DEFAULTS + 'builtin_probes = false\n\n[probes.review]\nagent = "codex"\nprompt = '
        '"Review."\n\n[merge]\nverify = "./check.sh"\n'
    )
    repo = _repo(tmp_path, monkeypatch, config, init=True)
    before = _state(repo)
    probes = cli(repo, "probes")
    assert probes.code == 3
    assert_one_line(probes.err, "agent 'codex' ([probes.review]): program 'codex' not found")
    assert _state(repo) == before
    assert cli(repo, "add-lane", "one", '{"tasks": ["echo one > one.txt"]}').code == 0
    assert cli(repo, "execute").code == 0
    head = git(repo, "rev-parse", "main")
    merged = cli(repo, "merge")
    assert merged.code == 3
    assert_one_line(merged.err, "[merge] verify: program './check.sh' not found")
    assert git(repo, "rev-parse", "main") == head


def test_execute_names_all_missing_agents_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch, SHELL_DEFAULTS, init=True)
    lanes = '{"a": {"tasks": ["x"], "agent": "codex"}, "b": {"tasks": ["y"], "agent": "gemini"}}'
    (tmp_path / "lanes.json").write_text(lanes, encoding="utf-8")
    assert cli(repo, "add-lane", "--from", str(tmp_path / "lanes.json")).code == 0
    done = cli(repo, "execute")
    assert done.code == 3
    assert_one_line(done.err, "lane 'a'", "'codex' not found", "lane 'b'", "'gemini' not found")
    assert git(repo, "branch", "--list", "lane-*") == ""


def test_doctor_prints_a_table_and_exits_3_when_something_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch, '[merge]\nverify = "tox-missing"\n')
    before = _state(repo)
    done = cli(repo, "doctor")
    assert done.code == 3
    rows = {line[2:].split("  ")[0].strip(): line[0] for line in done.out.splitlines()[:-1]}
    assert rows["git ≥ 2.38"] == "✓"
    assert rows["repository"] == "✓"
    assert rows["orchestree.toml"] == "✓"
    assert rows["agent 'shell' (the built-in probes)"] == "✓"
    assert rows["agent 'claude' ([defaults] agent, for the plan's lanes)"] == "✗"
    assert rows["[merge] verify"] == "✗"
    assert done.out.splitlines()[-1] == "2 missing; fix the rows marked ✗"
    assert _state(repo) == before  # doctor changes nothing, not even init


def test_doctor_exits_0_when_everything_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch, SHELL_DEFAULTS + '\n[merge]\nverify = "true"\n')
    done = cli(repo, "doctor")
    assert done.code == 0, done.out
    assert "✗" not in done.out
    assert done.out.splitlines()[-1] == "everything a run needs is here"


def test_doctor_outside_a_repository_says_so(tmp_path: Path) -> None:
    done = cli(tmp_path, "doctor")
    assert done.code == 3
    assert "✗ repository" in done.out
    assert "is not inside a git repository" in done.out


def test_a_missing_test_runner_refuses_the_probes_before_any_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(tmp_path, monkeypatch, SHELL_DEFAULTS, init=True)
    tools = tmp_path / "tools"  # git and sh only: no pytest anywhere but orchestree's own
    tools.mkdir()
    for program in ("git", "sh"):
        found = shutil.which(program)
        assert found is not None
        (tools / program).symlink_to(found)
    monkeypatch.setenv("PATH", os.pathsep.join([str(tools), BIN]))
    before = _state(repo)
    done = cli(repo, "probes")
    assert done.code == 3
    assert_one_line(done.err, "[probes.tests] runner: pytest: no .venv/venv with it")
    assert _state(repo) == before
    table = cli(repo, "doctor")
    assert table.code == 3
    assert "✗ [probes.tests] runner" in table.out
