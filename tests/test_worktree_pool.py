"""`[worktree] pool = N` (DESIGN.md §15): worktrees prepared ahead of time, so a lane
only claims one and checks out its start commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from exec_helpers import BASE_CONFIG, add_lanes, cli, git, make_repo, tracker

SETUP = (
    "echo $PWD >> {runs} && mkdir -p deps/pkg && "
    "for i in 1 2 3; do echo dep $i > deps/pkg/f$i.txt; done && echo made > made.txt"
)


def pool_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str, size: int = 2,
              extra: str = "") -> Path:  # fmt: skip
    config = BASE_CONFIG + f'[worktree]\nsetup = "{setup}"\npool = {size}\n' + extra
    return make_repo(tmp_path, monkeypatch, config, files={".gitignore": "deps/\n"})


def test_lanes_claim_prepared_worktrees_and_commit_only_their_own_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "setup.runs"
    repo = pool_repo(tmp_path, monkeypatch, SETUP.format(runs=runs))
    # A first run on this base leaves two spares behind, which the next one reuses.
    add_lanes(repo, {"warm": {"tasks": ["true"]}})
    assert cli(repo, "execute").code == 0
    lanes = {f"l{n}": {"tasks": [f"cat deps/pkg/f1.txt > seen{n}.txt"]} for n in range(3)}
    lanes["l0"]["tasks"].append("echo changed by the agent > made.txt")
    add_lanes(repo, lanes)
    result = cli(repo, "execute", "--max-parallel", "1")
    assert result.code == 0, result.out + result.err
    ran_in = runs.read_text().splitlines()
    for n in range(3):
        log = (repo / ".orchestration" / "logs" / f"agent-l{n}.log").read_text()
        # l0 and l1 take the two spares; l2 one refilled meanwhile (or runs setup itself)
        pooled = "orchestree: worktree from the pool (p-" in log
        assert pooled or (n == 2 and "orchestree: worktree setup: " in log), log
        assert git(repo, "show", f"lane-l{n}:seen{n}.txt") == "dep 1"
        files = git(repo, "ls-tree", "-r", "--name-only", f"lane-l{n}").splitlines()
        assert "deps/pkg/f1.txt" not in files
        # setup's own file is not the lane's, unless its agent changed it
        assert ("made.txt" in files) == (n == 0)
    assert git(repo, "show", "lane-l0:made.txt") == "changed by the agent"
    # Setup ran in the pool's folder (the lanes' worktrees are the pool's, moved).
    assert sum("/.worktrees/.pool/p-" in line for line in ran_in) >= 4
    # Spares are kept for the next run on this base, and never more than two.
    spare = sorted(p.name for p in (repo / ".worktrees" / ".pool").iterdir() if p.is_dir())
    assert 1 <= len(spare) <= 2
    cleaned = cli(repo, "cleanup", "--force")
    assert cleaned.code == 0, cleaned.out + cleaned.err
    assert "removed spare worktree .worktrees/.pool/p-" in cleaned.out
    assert not (repo / ".worktrees" / ".pool").exists()
    assert "/.pool/" not in git(repo, "worktree", "list")
