"""Issue 21, items 5 and 12: a `probes` run says which probes run and why, keeps the
built-in probes beside a configured one, commits nothing when nothing changed, and
writes no absolute path of this machine into the repository's history."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from exec_helpers import cli, git
from pipeline_helpers import BUGGY, SHELL_DEFAULTS, pipeline_repo


def _commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "main"))


def test_one_configured_probe_keeps_the_built_ins_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SHELL_DEFAULTS + '\n[probes.todo]\nbuiltin = "markers"\n'
    repo = pipeline_repo(tmp_path, monkeypatch, BUGGY, config)
    done = cli(repo, "probes")
    assert done.code == 0, done.err
    line = next(x for x in done.out.splitlines() if x.startswith("probes: "))
    # `todo` runs the markers built-in, so `markers` does not run twice.
    assert line.startswith(
        "probes: todo ([probes.todo], built-in markers), inventory (built-in), "
        "tests (built-in), lint (built-in) — built-ins kept beside orchestree.toml's probes"
    )
    generated = sorted(p.name for p in (repo / "docs/_generated").iterdir())
    assert generated == ["inventory", "lint", "tests", "todo"]

    only = config.replace("[defaults]", "[defaults]\nbuiltin_probes = false")
    (repo / "orchestree.toml").write_text(only, encoding="utf-8")
    git(repo, "commit", "-qam", "only the configured probe")
    again = cli(repo, "probes")
    assert again.code == 0, again.err
    assert "probes: todo ([probes.todo], built-in markers) — [defaults] builtin_probes = false" in (
        again.out
    )


def test_probes_on_unchanged_code_commit_nothing_and_no_local_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = pipeline_repo(tmp_path, monkeypatch, BUGGY, SHELL_DEFAULTS)
    first = cli(repo, "probes")
    assert first.code == 0, first.out + first.err  # all four probes completed and merged
    after_first = _commits(repo)
    assert after_first > 1
    for _ in range(2):
        again = cli(repo, "probes")
        assert again.code == 0, again.err
        assert _commits(repo) == after_first, git(repo, "log", "--stat", "-3", "main")
    history = git(repo, "log", "-p", "--all")
    local = [str(tmp_path), sys.executable, sys.prefix, os.path.expanduser("~")]
    assert [path for path in local if path in history] == []
    # What changes from run to run stays in the probe's log, not in its results.
    log = (repo / ".orchestration/logs/agent-tests.log").read_text(encoding="utf-8")
    assert " s; the end of its output:" in log
