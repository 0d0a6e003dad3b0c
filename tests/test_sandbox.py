"""The bubblewrap sandbox per lane (DESIGN.md §15), against real bwrap, git and agents.

A hostile agent tries to write everywhere it should not; each write must fail (or,
for refs, be undone and named on the lane) while the lane's own work is committed."""

from __future__ import annotations

import errno
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from exec_helpers import PYTHON, add_lanes, cli, git, make_repo, tracker, write_script
from orchestree import sandbox

DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}

HOSTILE = """
lane = sys.argv[1]
tries = json.loads(os.environ["HOSTILE_TARGETS"])
seen = {}
for name, path in tries.items():
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write("pwned by " + lane + "\\n")
        seen[name] = "written"
    except OSError as exc:
        seen[name] = exc.errno
# Refs: git moves a branch through the shared refs folder, which stays writable.
moved = subprocess.run(["git", "update-ref", "refs/heads/main", "HEAD~0"], capture_output=True)
made = subprocess.run(["git", "branch", "evil"], capture_output=True)
seen["move-main"] = moved.returncode
seen["make-branch"] = made.returncode
key = Path(os.environ["ORCHESTREE_TRACKER"]).parent / "ledger" / "ledger.key"
seen["ledger-key"] = key.read_bytes().decode()
update = json.dumps({"lanes": {lane: {"progress": "tried everything"}}})
helper = subprocess.run(
    [sys.executable, "access_tracker.py", os.environ["ORCHESTREE_TRACKER"], update],
    capture_output=True, text=True,
)
seen["helper"] = helper.returncode
Path("/tmp/private.txt").write_text("mine\\n")
seen["tmp"] = Path("/tmp/private.txt").read_text()
Path("attempts.json").write_text(json.dumps(seen, sort_keys=True))
subprocess.run(["git", "add", "attempts.json"], check=True)
subprocess.run(["git", "commit", "-qm", "own work"], check=True)
"""


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside the repository and outside /tmp (which the sandbox replaces)."""
    folder = Path("/var/tmp") / f"orchestree-sandbox-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_bwrap_is_usable_here() -> None:
    assert sandbox.unavailable("bwrap") is None
    assert sandbox.unavailable("none") is None


def test_a_hostile_agent_writes_nothing_outside_its_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# mine\n", encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    script = write_script(home / "hostile.py", HOSTILE)  # /tmp is private inside
    config = (
        '[defaults]\nagent = "shell"\nkill_grace_s = 0.5\n'
        f'[agents.hostile]\ncommand = ["{PYTHON}", "{script}", "{{lane}}"]\n'
        '[sandbox]\nkind = "bwrap"\n'
    )
    repo = make_repo(tmp_path, monkeypatch, config)
    main_before = git(repo, "rev-parse", "main")
    targets = {
        "base-worktree": str(repo / "README.md"),
        "other-lane": str(repo / ".worktrees" / "agent-other" / "other.txt"),
        "bashrc": str(home / ".bashrc"),
        "outside-repo": str(outside / "note.txt"),
        "ledger": str(repo / ".orchestration" / "ledger" / "ledger.json"),
        "helper-file": str(repo / ".orchestration" / "access_tracker.py"),
        "config-checked": str(repo / ".orchestration" / "ledger" / "config.checked"),
        "tmp-outside": str(tmp_path / "outside.txt"),
    }
    monkeypatch.setenv("HOSTILE_TARGETS", json.dumps(targets))
    add_lanes(
        repo,
        {
            "other": {"tasks": ["echo other > other.txt"]},
            "hostile": {"agent": "hostile", "depends_on": ["other"]},
        },
    )
    result = cli(repo, "execute")
    assert result.code == 0, result.out + result.err
    lanes = tracker(repo)["lanes"]
    assert lanes["hostile"]["status"] == "completed", lanes["hostile"]
    seen = json.loads(git(repo, "show", "lane-hostile:attempts.json"))
    denied = ("base-worktree", "other-lane", "bashrc", "outside-repo", "ledger", "helper-file",
              "config-checked")  # fmt: skip
    for name in denied:
        assert seen[name] in DENIED, (name, seen[name])
    assert (repo / ".orchestration" / "ledger" / "config.checked").is_file()
    # Inside, the move worked (the refs folder is writable); afterwards it is undone.
    assert seen["move-main"] == 0
    assert seen["make-branch"] == 0
    assert git(repo, "rev-parse", "main") == main_before
    assert git(repo, "branch", "--list", "evil") == ""
    assert lanes["hostile"]["refs_restored"] == ["refs/heads/evil", "refs/heads/main"]
    assert "refs/heads/main" in result.out
    # The helper still works, with the ledger's key hidden from it.
    assert seen["ledger-key"] == ""
    assert seen["helper"] == 0
    assert lanes["hostile"]["progress"] == "tried everything"
    assert (repo / ".orchestration" / "ledger" / "ledger.key").read_bytes() != b""
    # Nothing it wrote outside its folders survives: not the private /tmp either.
    assert seen["tmp"] == "mine\n"
    assert not (tmp_path / "outside.txt").exists()
    assert (home / ".bashrc").read_text(encoding="utf-8") == "# mine\n"
    assert not (outside / "note.txt").exists()
    assert (repo / "README.md").read_text(encoding="utf-8") == "# test repo\n"
    other = repo / ".worktrees" / "agent-other" / "other.txt"
    assert other.read_text(encoding="utf-8") == "other\n"


def _path_without_bwrap(tmp_path: Path, fake_bwrap: str | None = None) -> str:
    """A PATH with what a shell lane needs, and no `bwrap` (or a `bwrap` that fails as
    one does where the kernel refuses namespaces)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for program in ("git", "sh", "python3", "env", "true"):
        found = shutil.which(program)
        assert found is not None
        (folder / program).symlink_to(found)
    if fake_bwrap is not None:
        fake = folder / "bwrap"
        fake.write_text(f"#!/bin/sh\necho '{fake_bwrap}' >&2\nexit 1\n", encoding="utf-8")
        fake.chmod(0o755)
    return str(folder)


@pytest.mark.parametrize(
    ("fake", "needle"),
    [
        (None, "apt-get install bubblewrap"),
        ("bwrap: No permissions to create new namespace", "namespaces"),
    ],
)
def test_execute_refuses_before_starting_when_bwrap_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: str | None, needle: str
) -> None:
    config = '[defaults]\nagent = "shell"\n[sandbox]\nkind = "bwrap"\n'
    repo = make_repo(tmp_path, monkeypatch, config)
    add_lanes(repo, {"one": {"tasks": ["echo one > one.txt"]}})
    before = (repo / ".orchestration" / "tracker.json").read_bytes()
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path, fake))
    result = cli(repo, "execute")
    assert result.code == 3, result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert needle in lines[0]
    assert 'kind = "none"' in lines[0]  # how to turn it off
    assert (repo / ".orchestration" / "tracker.json").read_bytes() == before
    assert not (repo / ".worktrees" / "agent-one").exists()
    doctor = cli(repo, "doctor")
    assert doctor.code != 0
    assert any("bwrap" in line and needle in line for line in doctor.out.splitlines())


def test_a_lane_can_ask_for_the_sandbox_the_config_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch, '[defaults]\nagent = "shell"\n')
    add_lanes(repo, {"boxed": {"tasks": ["echo x >> ../../README.md"], "sandbox": "bwrap"}})
    result = cli(repo, "execute")
    assert result.code == 1, result.out
    assert (repo / "README.md").read_text(encoding="utf-8") == "# test repo\n"
    assert tracker(repo)["lanes"]["boxed"]["status"] == "failed"
    log = repo / ".orchestration" / "logs" / "agent-boxed.log"
    assert "Read-only file system" in log.read_text(encoding="utf-8")


def test_codex_leaves_sandboxing_to_ours_when_ours_is_on(tmp_path: Path) -> None:
    from orchestree.agents import LaunchContext, get_agent
    from orchestree.config import AgentConfig, Config
    from orchestree.models import Lane

    def mode(sandboxed: bool, config: Config) -> str:
        ctx = LaunchContext(
            "x", Lane(), tmp_path, "lane-x", tmp_path / "t.json", tmp_path / "p.md",
            sandboxed=sandboxed,
        )  # fmt: skip
        argv = get_agent("codex", config).invocation(ctx, "do it").argv
        return argv[argv.index("--sandbox") + 1]

    assert mode(False, Config()) == "workspace-write"
    assert mode(True, Config()) == "danger-full-access"
    chosen = Config(agents={"codex": AgentConfig(permission_mode="read-only")})
    assert mode(True, chosen) == "read-only"  # what the user configured wins


@pytest.mark.parametrize("entry", ["cache", "./x", "~/../etc"])
def test_an_agent_folder_that_is_not_a_place_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    repo = make_repo(tmp_path, monkeypatch, '[defaults]\nagent = "shell"\n')
    config = f'[agents.mybot]\ncommand = ["mybot"]\nwritable = ["{entry}"]\n'
    (repo / "orchestree.toml").write_text(config, encoding="utf-8")
    result = cli(repo, "status")
    assert result.code == 2
    assert "agents.mybot.writable" in result.err
    assert "must be an absolute path or start with ~/" in result.err


def test_programs_under_tmp_stay_visible_behind_the_private_tmp(tmp_path: Path) -> None:
    """A repository cloned under /tmp runs its venv's python from there: the private
    /tmp would hide it (found when the suite ran from a clone in /tmp)."""
    from orchestree.sandbox import _programs_under_tmp

    bin_dir = tmp_path / "clone" / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python3").write_text("")
    assert str(tmp_path).startswith("/tmp/")  # pytest's own tmp_path lives there
    shown = _programs_under_tmp([str(bin_dir / "python3"), str(bin_dir), "/usr/bin", "python3", ""])
    assert shown == [str(tmp_path / "clone" / ".venv")]
