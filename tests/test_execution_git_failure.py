"""A git failure in one lane's bookkeeping is that lane's failure, never the run's."""

from __future__ import annotations

from pathlib import Path

import pytest

from exec_helpers import add_lanes, cli, make_repo, tracker


def test_a_lane_whose_work_cannot_be_committed_fails_alone_naming_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A git failure while committing one lane's leftovers fails that lane, with git's
    own line naming the file at fault; the other lanes and the run go on (the chaos
    suite found the whole `execute` ending with exit 3 instead)."""
    repo = make_repo(tmp_path, monkeypatch)
    jam = 'echo work > w.txt && touch "$(git rev-parse --absolute-git-dir)/index.lock"'
    add_lanes(repo, {"jam": {"tasks": [jam]}, "fine": {"tasks": ["echo ok > ok.txt"]}})

    result = cli(repo, "execute")

    assert result.code == 1, result.err
    lanes = tracker(repo)["lanes"]
    assert lanes["fine"]["status"] == "completed"
    assert lanes["jam"]["status"] == "failed"
    assert "index.lock" in lanes["jam"]["error"]
    assert "its work could not be committed" in lanes["jam"]["error"]
