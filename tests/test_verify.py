"""verify.py: `[merge] verify` run at each merge candidate in one scratch worktree.

It runs the command at exactly the candidate's files, says pass (None) or fail with the
tail of the output, reuses its scratch worktree from one candidate to the next, removes
it afterwards, and sweeps scratch worktrees left by killed merges. (A check past its
timeout, a `setsid` child included, is tests/test_verify_timeout.py.)
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from lanes_helpers import commit_on_lane, make_repo, sh
from orchestree import git
from orchestree.merge.verify import TAIL_CHARS, TAIL_LINES, Verifier, sweep_scratch, verifier
from orchestree.repo import Repo, open_repo


def repo_with(tmp_path: Path, verify: str = "", timeout: float = 60) -> Repo:
    toml = f'[merge]\nverify = "{verify}"\nverify_timeout_s = {timeout}\n' if verify else ""
    return open_repo(make_repo(tmp_path / "repo", {"README.md": "base\n"}, toml=toml))


def scratch_trees(repo: Repo) -> list[Path]:
    return [t.path for t in git.worktree_list(repo.root) if t.path.name.startswith("verify-")]


def test_no_verify_command_means_no_verifier_and_no_worktree(tmp_path: Path) -> None:
    repo = repo_with(tmp_path)
    with verifier(repo) as found:
        assert found is None
    assert scratch_trees(repo) == []


def test_the_check_runs_at_the_candidate_and_its_worktree_is_removed_after(
    tmp_path: Path,
) -> None:
    repo = repo_with(tmp_path, verify="grep -q good state.txt")
    good = commit_on_lane(repo.root, "good", {"state.txt": "good\n"}, worktree=False)
    bad = commit_on_lane(repo.root, "bad", {"state.txt": "bad\n"}, worktree=False)
    with verifier(repo) as check:
        assert check is not None
        assert check.run(good, "good") is None
        assert scratch_trees(repo) == [repo.layout.orch.resolve() / f"verify-{os.getpid()}"]
        assert check.run(bad, "bad") == "verify `grep -q good state.txt` exited 1:"
        assert check.run(good, "good") is None
    assert scratch_trees(repo) == []
    assert not (repo.layout.orch / f"verify-{os.getpid()}").exists()
    assert sh(repo.root, "status", "--porcelain") == ""


def test_the_check_sees_the_lane_the_candidate_and_no_inherited_git_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = repo_with(tmp_path)
    head = commit_on_lane(repo.root, "a", {"a.txt": "a\n"}, worktree=False)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    seen = tmp_path / "seen.txt"
    command = f'echo "$ORCHESTREE_LANE $ORCHESTREE_CANDIDATE $(git rev-parse HEAD) $PWD" > {seen}'
    check = Verifier(repo, command, 60)
    try:
        assert check.run(head, "a") is None
    finally:
        check.close()
    lane, candidate, at, where = seen.read_text(encoding="utf-8").split()
    assert (lane, candidate, at) == ("a", head, head)
    assert Path(where) == repo.layout.orch.resolve() / f"verify-{os.getpid()}"


def test_a_reused_worktree_holds_only_the_next_candidates_files(tmp_path: Path) -> None:
    repo = repo_with(tmp_path)
    first = commit_on_lane(repo.root, "a", {"a.txt": "a\n"}, worktree=False)
    second = commit_on_lane(repo.root, "b", {"b.txt": "b\n"}, worktree=False)
    listing = tmp_path / "listing"
    check = Verifier(repo, f"ls -A > {listing}; touch stray.txt; mkdir -p build/x; touch x.log", 60)
    try:
        assert check.run(first, "a") is None
        assert listing.read_text(encoding="utf-8").split() == [".git", "README.md", "a.txt"]
        assert check.run(second, "b") is None  # the same worktree, cleaned
        assert listing.read_text(encoding="utf-8").split() == [".git", "README.md", "b.txt"]
        assert len(scratch_trees(repo)) == 1
    finally:
        check.close()


def test_a_failure_reports_the_tail_of_what_the_check_printed(tmp_path: Path) -> None:
    repo = repo_with(tmp_path)
    head = sh(repo.root, "rev-parse", "HEAD")
    command = "for i in $(seq 1 100); do echo line $i; done; echo oops >&2; exit 3"
    check = Verifier(repo, command, 60)
    try:
        said = check.run(head, "a") or ""
    finally:
        check.close()
    head_line, *tail = said.splitlines()
    assert head_line == f"verify `{command}` exited 3:"
    assert len(tail) == TAIL_LINES
    assert tail[-1] == "oops"  # stderr is in the output too
    assert tail[0] == f"line {100 - TAIL_LINES + 2}"
    wide = Verifier(repo, "python3 -c \"print('x' * 5000)\"; exit 1", 60)
    try:
        long_tail = (wide.run(head, "a") or "").split("\n", 1)[1]
    finally:
        wide.close()
    assert long_tail == "x" * TAIL_CHARS


def test_a_check_past_its_timeout_is_ended_with_its_children(tmp_path: Path) -> None:
    repo = repo_with(tmp_path)
    head = sh(repo.root, "rev-parse", "HEAD")
    beat = tmp_path / "beat"
    check = Verifier(repo, f"(while true; do date +%s%N > {beat}; sleep 0.1; done) & sleep 300", 1)
    began = time.monotonic()
    try:
        said = check.run(head, "a")
    finally:
        check.close()
    assert time.monotonic() - began < 30
    assert said == f"verify `{check.command}` timed out after 1 s:"
    last = beat.read_text(encoding="utf-8")
    time.sleep(0.5)
    assert beat.read_text(encoding="utf-8") == last  # the background loop is gone too


def test_sweep_removes_scratch_worktrees_of_dead_merges_only(tmp_path: Path) -> None:
    repo = repo_with(tmp_path)
    head = sh(repo.root, "rev-parse", "HEAD")
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        orch = repo.layout.orch
        for name in (f"verify-{dead.pid}", f"verify-{live.pid}", "verify-x", "keep-me"):
            git.worktree_add_detached(repo.root, orch / name, head)
        removed = sweep_scratch(repo)
        assert sorted(p.name for p in removed) == sorted([f"verify-{dead.pid}", "verify-x"])
        left = {t.path.name for t in git.worktree_list(repo.root)}
        assert left == {repo.root.name, f"verify-{live.pid}", "keep-me"}
    finally:
        live.kill()
        live.wait()
    assert [p.name for p in sweep_scratch(repo)] == [f"verify-{live.pid}"]


def test_a_verifier_sweeps_what_a_killed_merge_left(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, verify="true")
    head = sh(repo.root, "rev-parse", "HEAD")
    dead = subprocess.Popen(["true"])
    dead.wait()
    git.worktree_add_detached(repo.root, repo.layout.orch / f"verify-{dead.pid}", head)
    with verifier(repo) as check:
        assert check is not None
        assert scratch_trees(repo) == []
    assert not (repo.layout.orch / f"verify-{dead.pid}").exists()
