"""A full or read-only `.orchestration/` (issue 13, must-show 5): one line naming the
disk and the file, the tracker intact, and `execute` resumes once there is space.

`.orchestration/` is a real small tmpfs (or a read-only bind mount) for the test's
length; the test unmounts it, whatever happens.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exec_helpers import (
    add_lanes,
    agent_config,
    cli,
    make_repo,
    spawn,
    statuses,
    wait_for,
    write_script,
)
from orchestree.models import Tracker

LANES = ("a", "b", "c")


@contextlib.contextmanager
def mounted_over(folder: Path, *mount_args: str) -> Iterator[Path]:
    """Mount something over `folder`, its files copied in; unmounted at the end."""
    saved = folder.parent / f"{folder.name}.saved"
    shutil.copytree(folder, saved)
    subprocess.run(["mount", *mount_args, str(folder)], check=True)
    try:
        shutil.copytree(saved, folder, dirs_exist_ok=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    marks = tmp_path / "marks"
    marks.mkdir()
    script = write_script(
        tmp_path / "agent.py",
        f"""
lane = sys.argv[1]
with (Path({str(marks)!r}) / f"{{lane}}.start").open("a") as fh:
    fh.write("started\\n")
time.sleep(3)
Path(f"{{lane}}.txt").write_text("done\\n")
""",
    )
    repo = make_repo(tmp_path, monkeypatch, agent_config("slow", script))
    add_lanes(repo, {lane: {"agent": "slow", "max_attempts": 2} for lane in LANES})
    return repo, marks


def _fill(folder: Path) -> None:
    """Write until the disk says it is full."""
    refused = 0
    with (folder / "filler").open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError as exc:
            refused = exc.errno or 0
    assert refused == errno.ENOSPC


def _intact(orch: Path) -> None:
    """The tracker parses and validates; so does its last good copy, if any."""
    for name in ("tracker.json", "tracker.json.bak"):
        path = orch / name
        if path.exists() or name == "tracker.json":
            Tracker.model_validate(json.loads(path.read_text(encoding="utf-8")))


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_execute_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, marks = _repo(tmp_path, monkeypatch)
    orch = repo / ".orchestration"
    with mounted_over(orch, "-t", "tmpfs", "-o", "size=1m", "orchestree-small-disk"):
        run = spawn(repo, "execute", "--max-parallel", "3")
        try:
            wait_for(lambda: all((marks / f"{n}.start").exists() for n in LANES), 30, "agents")
            _fill(orch)
            out, err = run.communicate(timeout=60)
        finally:
            run.kill()
            run.communicate()
        assert run.returncode == 3, out + err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("orchestree: no space left on orchestree-small-disk ")
        assert f"(mounted at {orch}) while writing {orch}/" in lines[0]
        assert "Traceback" not in err + out
        _intact(orch)
        (orch / "filler").unlink()  # there is space again
        result = cli(repo, "execute", "--max-parallel", "3")
        assert result.code == 0, result.out + result.err
        assert statuses(repo) == dict.fromkeys(LANES, "completed")
        _intact(orch)
    for lane in LANES:
        assert (repo / f".worktrees/agent-{lane}/{lane}.txt").exists()


def test_a_read_only_orchestration_folder_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = _repo(tmp_path, monkeypatch)
    orch = repo / ".orchestration"
    before = (orch / "tracker.json").read_bytes()
    subprocess.run(["mount", "--bind", str(orch), str(orch)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(orch)], check=True)
        result = cli(repo, "execute")
        assert result.code == 3, result.out + result.err
        lines = result.err.strip().splitlines()
        assert len(lines) == 1, result.err
        assert lines[0].startswith("orchestree: the file system is read-only on ")
        assert f"(mounted at {orch}) while writing {orch}/" in lines[0]
        assert "make it writable" in lines[0]
        assert cli(repo, "status").code == 0  # reading still works
    finally:
        subprocess.run(["umount", "-l", str(orch)], check=False)
    assert (orch / "tracker.json").read_bytes() == before  # nothing changed
    result = cli(repo, "execute")
    assert result.code == 0, result.out + result.err
    assert statuses(repo) == dict.fromkeys(LANES, "completed")
