"""`[merge] verify` past its timeout: the check's whole tree ends, a `setsid` child too."""

from __future__ import annotations

from pathlib import Path

import pytest

from exec_helpers import BASE_CONFIG, add_lanes, cli, make_repo, process_alive, tracker


def test_a_verify_that_times_out_is_ended_with_its_setsid_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "daemon.pid"
    check = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' & sleep 300"
    config = BASE_CONFIG + f'\n[merge]\nverify = "{check}"\nverify_timeout_s = 1\n'
    repo = make_repo(tmp_path, monkeypatch, config)
    add_lanes(repo, {"work": {"tasks": ["echo work > work.txt"]}})
    assert cli(repo, "execute").code == 0
    result = cli(repo, "merge")
    assert result.code == 1, result.out + result.err
    lane = tracker(repo)["lanes"]["work"]
    assert lane["status"] == "verify_failed"
    assert "timed out after 1 s" in (lane["error"] or "") + result.out
    daemon = int(pidfile.read_text())
    assert not process_alive(daemon)
