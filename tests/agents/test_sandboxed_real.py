"""The real Claude Code, Codex, Gemini and Aider CLIs inside orchestree's bubblewrap
sandbox (issue 17, must show 2): each still fails with its own message, and nothing
any of them writes outside its allowed folders survives. Run by `make test-agents`.

Also what Codex's own sandbox (bubblewrap too) does nested inside ours."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from test_execute_real import CONFIG, LANES, SAYS, Executed, execute, lane

from orchestree import sandbox
from orchestree.agents import get_agent
from orchestree.config import Config

BOXED = CONFIG + '\n[sandbox]\nkind = "bwrap"\n'


def files(folder: Path) -> dict[str, str]:
    """Every regular file under `folder` and a hash of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def allowed(project: harness.Project) -> list[Path]:
    """Where the lanes' agents may write: their worktrees, the repository's git data,
    the tracker's files, and the presets' own folders in HOME."""
    repo, home = project.repo, project.home
    folders = [repo / ".worktrees", repo / ".git", repo / ".orchestration"]
    for name in ("claude", "codex", "gemini", "aider"):
        preset = get_agent(name, Config())
        folders += [Path(w.replace("~", str(home), 1)) for w in preset.writable_folders]
    return folders


def outside(project: harness.Project) -> dict[str, str]:
    keep = allowed(project)
    return {
        name: digest
        for name, digest in files(project.root).items()
        if not any((project.root / name).is_relative_to(folder) for folder in keep)
    }


@pytest.fixture(scope="module")
def boxed() -> Iterator[tuple[Executed, dict[str, str], dict[str, str]]]:
    with harness.project(BOXED, {k: lane(v) for k, v in LANES.items()}) as project:
        before = outside(project)
        run = execute(project)
        yield run, before, outside(project)


def test_each_cli_in_the_sandbox_fails_with_its_own_message(
    boxed: tuple[Executed, dict[str, str], dict[str, str]],
) -> None:
    run = boxed[0]
    assert run.code == 1, run.out + run.err
    for lane_id in LANES:
        entry = run.tracker["lanes"][lane_id]
        assert entry["status"] == "failed", entry
        assert re.match(SAYS[lane_id], entry["error"]), (lane_id, entry["error"])
        log = run.project.log(lane_id)
        assert "bwrap" not in log, log  # the sandbox itself said nothing: it worked
        runs = run.project.repo / ".orchestration" / "runs"
        spec = json.loads((runs / f"{lane_id}.1.spec.json").read_text(encoding="utf-8"))
        assert spec["sandbox"]["kind"] == "bwrap"
    codex = json.loads(
        (run.project.repo / ".orchestration" / "runs" / "codex-lane.1.spec.json").read_text()
    )
    assert codex["argv"][codex["argv"].index("--sandbox") + 1] == "danger-full-access"


def test_nothing_written_outside_the_allowed_folders_survives(
    boxed: tuple[Executed, dict[str, str], dict[str, str]],
) -> None:
    _, before, after = boxed
    assert after == before


def _in_our_sandbox(box: harness.Sandbox, argv: list[str]) -> subprocess.CompletedProcess[str]:
    plan = sandbox.plan(
        "bwrap",
        True,
        box.repo,
        box.repo / ".git",
        box.repo / ".orchestration",
        [str(box.home / ".codex")],
    )
    env = box.env({"HOME": str(box.home)})
    return subprocess.run(
        sandbox.wrap(plan, argv, str(box.worktree)), env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=60, check=False,
    )  # fmt: skip


def test_codex_cannot_nest_its_sandbox_in_ours_so_the_preset_turns_it_off() -> None:
    """Measured: Codex's workspace-write sandbox is bubblewrap, which cannot map its
    user namespace inside ours; every command it runs fails. With ours on, the preset
    asks for `danger-full-access`, and ours is what confines Codex's commands."""
    with harness.sandbox() as box:
        (box.home / "hostile").mkdir()
        target = box.home / "hostile" / "x"
        script = f"echo hi > made.txt; echo pwned > {target}"
        nested = _in_our_sandbox(
            box, ["codex", "sandbox", "-c", 'sandbox_mode="workspace-write"', "--", "sh", "-c",
                  script],
        )  # fmt: skip
        assert "setting up uid map: Operation not permitted" in nested.stdout + nested.stderr
        assert not (box.worktree / "made.txt").exists()
        flat = _in_our_sandbox(
            box, ["codex", "sandbox", "-c", 'sandbox_mode="danger-full-access"', "--", "sh",
                  "-c", script],
        )  # fmt: skip
        assert (box.worktree / "made.txt").read_text() == "hi\n", flat.stdout + flat.stderr
        assert "Read-only file system" in flat.stdout + flat.stderr
        assert not target.exists()
