"""The README is a contract: its command reference is the CLI's own --help, and its
quick start works when followed word for word."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _script(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_reference_is_generated_from_the_commands_help() -> None:
    reference = _script("cli_reference")
    assert reference.main(["--check"]) == 0, "run `python scripts/cli_reference.py`"  # type: ignore[attr-defined]
    text = README.read_text()
    for command in ("init", "execute", "merge", "cleanup", "monitor", "full", "retry"):
        assert f"#### `orchestree {command}`" in text


def test_the_quick_start_runs_lanes_and_merges_them(tmp_path: Path) -> None:
    block = re.search(
        r"<!-- quickstart:begin -->\n```bash\n(.*?)```\n<!-- quickstart:end -->",
        README.read_text(),
        re.DOTALL,
    )
    assert block is not None
    repo = tmp_path / "your-repo"
    repo.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "commit", "-q", "--allow-empty", "-m", "start"],
    ):
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    done = subprocess.run(
        ["bash", "-e", "-c", block.group(1)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    tracker = json.loads((repo / ".orchestration" / "tracker.json").read_text())
    assert {k: v["status"] for k, v in tracker["lanes"].items()} == {
        "api": "merged",
        "docs": "merged",
    }
    files = subprocess.run(
        ["git", "ls-tree", "--name-only", "main"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"lane-api.txt", "lane-docs.txt"} <= set(files)
