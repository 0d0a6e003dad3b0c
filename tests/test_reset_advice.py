"""Issue 21, item 11: what `reset` advises for a branch it keeps works afterwards,
followed literally, and `add-lane` of that id adopts the branch orchestree made."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from exec_helpers import add_lanes, cli, git, make_repo, statuses, tracker


def _reset_keeping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:
    """A completed, unmerged lane `fresh1`, then `reset --yes`: its advice line."""
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"fresh1": {"tasks": ["echo one > one.txt"]}})
    assert cli(repo, "execute").code == 0
    start = tracker(repo)["lanes"]["fresh1"]["start_commit"]
    done = cli(repo, "reset", "--yes")
    assert done.code == 0, done.err
    line = next(x for x in done.out.splitlines() if x.startswith("kept branch lane-fresh1"))
    assert "orchestree merge --lane" not in done.out  # there is no lane after the reset
    assert statuses(repo) == {}
    return repo, line, start


def _advised(line: str, starts: str) -> str:
    return next(c for c in re.findall(r"`([^`]+)`", line) if c.startswith(starts))


def test_the_advised_git_merge_merges_the_kept_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, line, _ = _reset_keeping(tmp_path, monkeypatch)
    command = _advised(line, "git merge")
    subprocess.run(shlex.split(command), cwd=repo, check=True, capture_output=True)
    assert git(repo, "show", "main:one.txt") == "one"


def test_the_advised_add_lane_adopts_the_branch_and_it_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, line, start = _reset_keeping(tmp_path, monkeypatch)
    command = _advised(line, "orchestree add-lane")
    args = shlex.split(command.replace("'<lane JSON>'", '\'{"tasks": ["true"]}\''))[1:]
    added = cli(repo, *args)
    assert added.code == 0, added.err
    assert tracker(repo)["lanes"]["fresh1"]["start_commit"] == start
    assert git(repo, "for-each-ref", "refs/orchestree/kept/") == ""
    ran = cli(repo, "execute")
    assert ran.code == 0, ran.err  # no "commits orchestree did not make"
    assert cli(repo, "merge").code == 0
    assert git(repo, "show", "main:one.txt") == "one"


def test_a_branch_orchestree_did_not_make_is_still_not_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _, _ = _reset_keeping(tmp_path, monkeypatch)
    git(repo, "switch", "-q", "-c", "lane-mine")
    (repo / "mine.txt").write_text("by hand\n", encoding="utf-8")
    git(repo, "add", "mine.txt")
    git(repo, "commit", "-qm", "mine")
    git(repo, "switch", "-q", "main")
    assert cli(repo, "add-lane", "mine", '{"tasks": ["true"]}').code == 0
    refused = cli(repo, "execute")
    assert refused.code == 2
    assert "branch lane-mine already exists with commits orchestree did not make" in refused.err
