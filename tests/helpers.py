"""Shared helpers for the tests: real git repositories with a fixed identity, the CLI
run in-process or as the installed executable, and byte snapshots of tracker files.

Plain functions (not fixtures) so each test module states the fixtures it uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestree.cli import main

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "orchestree tests",
    "GIT_AUTHOR_EMAIL": "tests@orchestree.invalid",
    "GIT_COMMITTER_NAME": "orchestree tests",
    "GIT_COMMITTER_EMAIL": "tests@orchestree.invalid",
}
# The installed console script, beside the interpreter running the tests.
ORCHESTREE = Path(sys.executable).with_name("orchestree")


def env() -> dict[str, str]:
    """The environment for child processes: ours, a fixed git identity, no GIT_DIR."""
    base = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    return {**base, **GIT_IDENTITY, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env(), capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def make_repo(path: Path, commit: bool = True) -> Path:
    """A git repository on branch main, with one commit unless `commit` is False."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    if commit:
        (path / "README.md").write_text("# demo\n", encoding="utf-8")
        (path / "src").mkdir()
        (path / "src" / "app.py").write_text("print('hi')\n", encoding="utf-8")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "first")
    return path


def set_git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process CLI calls spawn git with our environment: give it the fixed identity."""
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `orchestree ARGS` in-process through its real entry point."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_exe(
    args: list[str], cwd: Path, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed `orchestree` executable."""
    return subprocess.run(
        [str(ORCHESTREE), *args],
        cwd=cwd,
        env=env(),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_helper(
    helper: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run an `access_tracker.py` copy with the system's python3, as an agent would."""
    return subprocess.run(
        ["python3", str(helper), *args],
        cwd=cwd or helper.parent,
        env=env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def snapshot(orch: Path) -> dict[str, bytes | None]:
    """The bytes of tracker.json and tracker.json.bak (None when absent)."""
    found: dict[str, bytes | None] = {}
    for name in ("tracker.json", "tracker.json.bak"):
        path = orch / name
        found[name] = path.read_bytes() if path.exists() else None
    return found


def assert_one_line(err: str, *needles: str) -> str:
    """`err` is exactly one non-empty line, without a traceback, holding every needle."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {err!r}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@contextmanager
def holding(code: str, arg: str) -> Iterator[subprocess.Popen[str]]:
    """A second process running `code` (with `arg`), which prints `held` once it holds
    its lock and keeps it until its stdin closes; killed and reaped on the way out."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, arg], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "held\n"
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
