"""`orchestree.toml`: defaults, the documented example, and one-line errors naming the
key and the file, through `load_config` and through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import assert_one_line, cli, make_repo, set_git_identity, snapshot
from orchestree.config import PRESETS, Config, LaneSettings, load_config
from orchestree.errors import UserError
from orchestree.models import LaneInput

# DESIGN.md §10 and §12, as a user would write them.
DESIGN_EXAMPLE = """
[defaults]
agent = "claude"
max_parallel = 4
timeout_s = 3600
max_attempts = 1
base_branch = "main"

[agents.mybot]
command = ["mybot", "--task", "{prompt}"]
env = { MYBOT_MODE = "auto" }

[worktree]
root = ".worktrees"
setup = "npm ci"
ports = [20000, 20999]

[probes.inventory]
builtin = "inventory"

[probes.security-review]
agent = "claude"
prompt = "Review the code for injection risks; write your findings as gaps."

[merge]
verify = "pytest -q"

[monitor]
host = "127.0.0.1"
port = 5555

[executor]
kind = "local"
scheduler = ""
workers = 2
remote = "origin"
"""


def write(root: Path, text: str) -> Path:
    path = root / "orchestree.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_every_default(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config == Config()
    assert (config.defaults.agent, config.defaults.max_parallel) == ("claude", 4)
    assert config.worktree.root == ".worktrees"
    assert (config.monitor.host, config.monitor.port) == ("127.0.0.1", 5555)
    assert config.agent_names() == set(PRESETS)


def test_the_design_example_loads(tmp_path: Path) -> None:
    write(tmp_path, DESIGN_EXAMPLE)
    config = load_config(tmp_path)
    assert config.agents["mybot"].command == ["mybot", "--task", "{prompt}"]
    assert config.agents["mybot"].env == {"MYBOT_MODE": "auto"}
    assert config.worktree.ports == (20000, 20999)
    assert config.probes["security-review"].agent == "claude"
    assert config.merge.verify == "pytest -q"
    assert "mybot" in config.agent_names()


def test_a_custom_agent_can_be_the_default(tmp_path: Path) -> None:
    write(tmp_path, '[defaults]\nagent = "mybot"\n[agents.mybot]\ncommand = ["mybot"]\n')
    assert load_config(tmp_path).defaults.agent == "mybot"


def test_a_preset_can_be_overridden_without_a_command(tmp_path: Path) -> None:
    write(tmp_path, '[agents.claude]\npermission_mode = "plan"\n')
    assert load_config(tmp_path).agents["claude"].permission_mode == "plan"


BAD_CONFIGS: list[tuple[str, str]] = [
    ("colour = 1\n", "unknown key 'colour'"),
    ("[defaults]\nagnet = 'claude'\n", "unknown key 'defaults.agnet'"),
    ("[agents.bot]\ncommand = ['bot']\nenvs = {}\n", "unknown key 'agents.bot.envs'"),
    ("[defaults]\nmax_parallel = 'four'\n", "key 'defaults.max_parallel'"),
    ("[defaults]\nmax_parallel = 0\n", "key 'defaults.max_parallel'"),
    ("[defaults]\nmax_parallel = '4'\n", "key 'defaults.max_parallel' input should be a valid"),
    ("[defaults]\nmax_parallel = 4.0\n", "key 'defaults.max_parallel' input should be a valid"),
    ("[defaults]\nkill_grace_s = inf\n", "key 'defaults.kill_grace_s' input should be a finite"),
    ("[defaults]\ntimeout_s = nan\n", "key 'defaults.timeout_s' input should be a finite"),
    ("[merge]\nverify_timeout_s = '60'\n", "key 'merge.verify_timeout_s'"),
    ("[monitor]\nport = true\n", "key 'monitor.port'"),
    ("[probes.p]\nbuiltin = 'markers'\nallow_agents = ['ghost']\n", "allow_agents: agent 'ghost'"),
    ("[defaults]\ntimeout_s = -1\n", "key 'defaults.timeout_s'"),
    ("[monitor]\nport = 70000\n", "key 'monitor.port'"),
    ("[worktree]\nports = [30000, 20000]\n", "key 'worktree.ports'"),
    (
        "[agents.bot]\ncommand = 'bot --go'\n",
        "key 'agents.bot.command' input should be a valid list",
    ),
    ("[agents.bot]\ncommand = ['bot', 3]\n", "key 'agents.bot.command.1'"),
    ("[agents.bot]\ncommand = []\n", "key 'agents.bot.command' value error, must name a program"),
    ("[agents.bot]\nenv = {}\n", "[agents.bot] needs `command`"),
    ("[defaults]\nagent = 'nobody'\n", "[defaults] agent: agent 'nobody' is neither a preset"),
    ("[probes.p]\nagent = 'ghost'\n", "[probes.p]: agent 'ghost' is neither a preset"),
    ("[plan]\nagent = 'ghost'\n", "[plan]: agent 'ghost'"),
    ("[executor]\nkind = 'k8s'\n", "key 'executor.kind'"),
    ("[defaults\nagent = 1\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "needle"), BAD_CONFIGS, ids=[n for _, n in BAD_CONFIGS])
def test_a_bad_config_is_one_line_naming_the_key_and_the_file(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as caught:
        load_config(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert needle in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "args",
    [
        ["init"],
        ["status"],
        ["add-lane", "x", "{}"],
        ["tracker", "get"],
        ["tracker", "update", "{}"],
        ["reset", "--yes"],
    ],
    ids=" ".join,
)
def test_the_cli_refuses_a_bad_config_before_doing_anything(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    set_git_identity(monkeypatch)
    root = make_repo(tmp_path / "repo")
    assert cli(capsys, "init", "--repo", str(root))[0] == 0
    path = write(root, "[defaults]\nagent = 'nobody'\nmax_paralel = 2\n")
    before = snapshot(root / ".orchestration")
    code, out, err = cli(capsys, *args, "--repo", str(root))
    assert (code, out) == (2, "")
    assert_one_line(err, str(path), "unknown key 'defaults.max_paralel'")
    assert snapshot(root / ".orchestration") == before


def test_a_lanes_own_settings_win_over_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "orchestree.toml").write_text(
        '[defaults]\nagent = "codex"\ntimeout_s = 60\nmax_attempts = 2\n'
        '[sandbox]\nkind = "bwrap"\n',
        encoding="utf-8",
    )
    config = load_config(tmp_path)
    assert config.for_lane(LaneInput()) == LaneSettings("codex", 60, 2, "bwrap")
    own = LaneInput(agent="shell", timeout_s=5, max_attempts=3, sandbox="none")
    assert config.for_lane(own) == LaneSettings("shell", 5, 3, "none")
