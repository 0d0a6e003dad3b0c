"""The tracker's trust boundary (docs/trust.md), shown by scripted agents that try.

Each hostile agent is a real subprocess run by `orchestree execute` (or `full`), doing
one ordinary thing an agent can do: calling the helper, writing tracker.json directly,
calling `orchestree tracker`, writing a probe result. Each test checks that the user's
work is intact, that no command runs that the configuration did not name, and that
what the agent did is named in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from _monitor_server import request, serve
from exec_helpers import (
    BASE_CONFIG,
    ORCHESTREE,
    PYTHON,
    add_lanes,
    cli,
    git,
    make_repo,
    process_alive,
    spawn,
    wait_for,
    write_script,
)
from orchestree import access_tracker
from orchestree.models import Tracker
from pipeline_helpers import SHELL_DEFAULTS, lanes, pipeline_repo, script_agent

# Waits (up to 20 s) until the tracker file shows `cond(data)`, for scripted agents.
WAIT = """
def tracker_path():
    return Path(os.environ["ORCHESTREE_TRACKER"])

def wait_until(cond):
    for _ in range(2000):
        try:
            data = json.loads(tracker_path().read_text())
            if cond(data):
                return data
        except ValueError:
            pass
        time.sleep(0.01)
    sys.exit("timed out waiting for the tracker")

def helper(update, env=None):
    proc = subprocess.run(["python3", "access_tracker.py", str(tracker_path()), json.dumps(update)],
                          capture_output=True, text=True, env=env)
    return [proc.returncode, proc.stdout, proc.stderr]
"""


def agents_config(tmp_path: Path, bodies: dict[str, str], defaults: str = "") -> str:
    """BASE_CONFIG with one custom agent per body, each a script given its lane id."""
    config = BASE_CONFIG + defaults
    for name, body in bodies.items():
        script = write_script(tmp_path / f"{name}.py", f"lane = sys.argv[1]\n{WAIT}\n{body}")
        config += f'\n[agents.{name}]\ncommand = ["{PYTHON}", "{script}", "{{lane}}"]\n'
    return config


def events(repo: Path) -> list[dict[str, Any]]:
    text = (repo / ".orchestration" / "events.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def ignored(repo: Path) -> list[str]:
    """Every edit of tracker.json orchestree recorded as ignored."""
    return [i for e in events(repo) if e["event"] == "edit-ignored" for i in e["ignored"]]


def on_main(repo: Path) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()


def valid_tracker(path: Path) -> Tracker:
    return Tracker.model_validate(access_tracker.loads_strict(path.read_text("utf-8")))


# --- an agent cannot add a lane that execute runs ------------------------------------


def test_a_lane_added_by_an_agent_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pwned, out = tmp_path / "PWNED", tmp_path / "helper.json"
    body = f"""
evil = {{"name": "evil", "agent": "shell", "tasks": ["touch {pwned}"]}}
Path({str(out)!r}).write_text(json.dumps(helper({{"lanes": {{"evil": evil}}}})))
data = json.loads(tracker_path().read_text())
data["lanes"]["evil"] = dict(evil, status="pending")
tracker_path().write_text(json.dumps(data))  # straight into the file, no helper
Path("work.txt").write_text("done")
"""
    repo = make_repo(tmp_path, monkeypatch, agents_config(tmp_path, {"adder": body}))
    add_lanes(repo, {"worker": {"tasks": ["Work"], "agent": "adder"}})

    result = cli(repo, "execute")

    assert result.code == 0, result.out + result.err
    code, _, err = json.loads(out.read_text())
    assert code == 2
    assert "lane 'evil' is not yours: this call speaks for lane 'worker'" in err
    assert "nothing was written" in err
    assert not pwned.exists()
    assert {k: v["status"] for k, v in lanes(repo).items()} == {"worker": "completed"}
    assert "lanes.evil added" in ignored(repo)
    said = [line for line in result.out.splitlines() if "edited outside" in line]
    assert len(said) == 1
    assert said[0].startswith("! tracker.json was edited outside orchestree; ignored: ")
    assert "lanes.evil added" in said[0]
    assert cli(repo, "merge").code == 0
    assert "work.txt" in on_main(repo)
    assert not pwned.exists()


# --- an agent cannot change the pid that cancel signals ------------------------------


def test_a_forged_pid_is_never_signalled_by_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = subprocess.Popen(["sleep", "120"])
    forged = tmp_path / "forged"
    body = f"""
me = "agent-" + lane
data = wait_until(lambda d: (d["agents"].get(me) or {{}}).get("pid"))
entry = data["agents"][me]
entry["pid"] = {decoy.pid}
if "pid_started" in entry:
    import psutil
    entry["pid_started"] = psutil.Process({decoy.pid}).create_time()
tracker_path().write_text(json.dumps(data))
Path({str(forged)!r}).write_text("done")
time.sleep(60)
"""
    try:
        config = agents_config(tmp_path, {"forger": body})
        repo = make_repo(tmp_path, monkeypatch, config)
        add_lanes(repo, {"sneaky": {"tasks": ["Wait"], "agent": "forger"}})
        run = spawn(repo, "execute")
        wait_for(forged.exists, 30, "the agent to forge its pid")

        cancelled = cli(repo, "cancel", "sneaky")

        assert cancelled.code == 0, cancelled.err
        assert f"pid {decoy.pid})" not in cancelled.out
        _, err = run.communicate(timeout=60)
        assert run.returncode == 1, err
        assert process_alive(decoy.pid)
        assert lanes(repo)["sneaky"]["status"] == "cancelled"
        assert any(i.startswith("agents.agent-sneaky.pid") for i in ignored(repo))
    finally:
        decoy.kill()
        decoy.wait()


# --- another lane's status, set by an agent, changes nothing --------------------------


def test_another_lanes_status_forged_to_completed_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lied, out = tmp_path / "lied", tmp_path / "helper.json"
    victim = f"""
Path("victim.txt").write_text("half-done work")
for _ in range(3000):
    if Path({str(lied)!r}).exists():
        break
    time.sleep(0.01)
sys.exit("the victim fails")
"""
    liar = f"""
wait_until(lambda d: d["lanes"]["victim"]["status"] == "running")
forged = {{"lanes": {{"victim": {{"status": "completed"}}}}}}
Path({str(out)!r}).write_text(json.dumps(helper(forged)))
data = json.loads(tracker_path().read_text())
data["lanes"]["victim"]["status"] = "completed"
data["agents"]["agent-victim"]["status"] = "completed"
tracker_path().write_text(json.dumps(data))
Path({str(lied)!r}).write_text("done")
Path("liar.txt").write_text("mine")
"""
    config = agents_config(tmp_path, {"victim": victim, "liar": liar})
    repo = make_repo(tmp_path, monkeypatch, config)
    add_lanes(
        repo,
        {
            "victim": {"tasks": ["Fail"], "agent": "victim"},
            "liar": {"tasks": ["Lie"], "agent": "liar"},
        },
    )

    result = cli(repo, "execute")

    assert result.code == 1, result.out + result.err  # a lane failed; nothing else went wrong
    assert "✗ victim: failed" in result.out
    code, _, err = json.loads(out.read_text())
    assert code == 2
    assert "lane 'victim' is not yours" in err
    assert {k: v["status"] for k, v in lanes(repo).items()} == {
        "victim": "failed",
        "liar": "completed",
    }
    assert "lanes.victim.status changed" in ignored(repo)
    assert "ignored: lanes.victim.status changed" in result.out
    merged = cli(repo, "merge")  # exit 1: the failed lane is still outstanding, and named
    assert merged.code == 1, merged.out + merged.err
    assert "still outstanding from earlier runs: victim (failed)" in merged.out
    files = on_main(repo)
    assert "liar.txt" in files
    assert "victim.txt" not in files  # the failed lane's work is not merged


# --- `tracker get/update` inside a lane's worktree -------------------------------------


def test_tracker_commands_inside_a_worktree_find_the_run_and_are_bound_to_the_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "calls.json"
    body = f"""
def run(*args, env=None):
    proc = subprocess.run([{ORCHESTREE!r}, "tracker", *args], capture_output=True, text=True,
                          env=env)
    return [proc.returncode, proc.stdout, proc.stderr]

bare = {{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTREE_")}}
calls = [
    run("update", json.dumps({{"lanes": {{lane: {{"progress": "from the cli"}}}}}})),
    run("get", "lanes." + lane + ".status"),
    run("update", json.dumps({{"lanes": {{"other": {{"progress": "x"}}}}}})),
    run("update", json.dumps({{"lanes": {{"other": {{"status": "completed"}}}}}}), env=bare),
    run("get", "lanes.other.status", env=bare),
    helper({{"lanes": {{"other": {{"progress": "x"}}}}}}, env=bare),
    helper({{"lanes": {{lane: {{"data": {{"step": 2}}}}}}}}, env=bare),
]
Path({str(out)!r}).write_text(json.dumps(calls))
Path("report.txt").write_text("done")
"""
    repo = make_repo(tmp_path, monkeypatch, agents_config(tmp_path, {"reporter": body}))
    add_lanes(
        repo,
        {
            "reporter": {"tasks": ["Report"], "agent": "reporter"},
            "other": {"tasks": ["true"], "depends_on": ["reporter"]},
        },
    )

    result = cli(repo, "execute")

    assert result.code == 0, result.out + result.err
    calls = json.loads(out.read_text())
    assert calls[0][:2] == [0, "tracker updated\n"]
    assert calls[1][:2] == [0, '"running"\n']
    for code, stdout, stderr in (calls[2], calls[3]):
        assert (code, stdout) == (2, "")
        assert stderr.count("\n") == 1
        assert "lane 'other' is not yours: this call speaks for lane 'reporter'" in stderr
    assert calls[4][:2] == [0, '"pending"\n']  # found from the worktree, without the env
    assert calls[5][0] == 2  # the helper's copy knows its lane from where it sits
    assert "lane 'other' is not yours" in calls[5][2]
    assert calls[6][0] == 0
    state = lanes(repo)
    assert state["reporter"]["progress"] == "from the cli"
    assert state["reporter"]["data"] == {"step": 2}
    assert state["other"]["status"] == "completed"
    assert state["other"]["progress"] is None
    assert not (repo / ".worktrees" / "agent-reporter" / ".orchestration").exists()
    bare = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTREE_")}
    shown = subprocess.run(
        [ORCHESTREE, "tracker", "get", "lanes.reporter.progress"],
        cwd=repo / ".worktrees" / "agent-reporter" / "",
        env=bare,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (shown.returncode, shown.stdout) == (0, '"from the cli"\n')


def test_an_agent_cannot_change_the_run_through_the_orchestree_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pwned, out = tmp_path / "PWNED", tmp_path / "calls.json"
    repo_path = tmp_path / "repo"
    body = f"""
evil = json.dumps({{"agent": "shell", "tasks": ["touch {pwned}"]}})
calls = []
for args in (["add-lane", "evil", evil], ["cancel", "other"], ["retry", "other"],
             ["merge"], ["reset", "--yes"], ["cleanup", "--force"]):
    proc = subprocess.run([{ORCHESTREE!r}, *args, "--repo", {str(repo_path)!r}],
                          capture_output=True, text=True)
    calls.append([proc.returncode, proc.stderr])
Path({str(out)!r}).write_text(json.dumps(calls))
Path("done.txt").write_text("done")
"""
    repo = make_repo(tmp_path, monkeypatch, agents_config(tmp_path, {"meddler": body}))
    add_lanes(
        repo,
        {
            "meddler": {"tasks": ["Meddle"], "agent": "meddler"},
            "other": {"tasks": ["true"], "depends_on": ["meddler"]},
        },
    )

    result = cli(repo, "execute")

    assert result.code == 0, result.out + result.err
    for code, err in json.loads(out.read_text()):
        assert code == 2
        assert err.count("\n") == 1
        assert "this is lane 'meddler''s agent (ORCHESTREE_LANE is set)" in err
    assert not pwned.exists()
    assert {k: v["status"] for k, v in lanes(repo).items()} == {
        "meddler": "completed",
        "other": "completed",
    }


def test_tracker_update_refuses_an_unknown_lane_and_execute_runs_nothing_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"docs-api": {"tasks": ["true"]}})
    before = (repo / ".orchestration" / "tracker.json").read_bytes()

    typo = cli(repo, "tracker", "update", '{"lanes": {"docs-apj": {"progress": "50%"}}}')

    assert typo.code == 2
    assert typo.err == (
        "orchestree: there is no lane 'docs-apj' (did you mean 'docs-api'?); lanes are created "
        "only by `orchestree add-lane` and `orchestree plan`\n"
    )
    assert (repo / ".orchestration" / "tracker.json").read_bytes() == before
    assert cli(repo, "execute").code == 0
    assert sorted(lanes(repo)) == ["docs-api"]


# --- a probe's result carries tasks, never an agent ----------------------------------

PROBER = """
out = Path(os.environ["ORCHESTREE_RESULTS_DIR"])
out.mkdir(parents=True, exist_ok=True)
gap = {"id": "cleanup", "title": "Clean up", "tasks": ["touch %s"], "paths": ["a.py"],
       "agent": "shell"}
(out / "state_probe.json").write_text(json.dumps(
    {"probe": lane, "summary": "one gap", "metrics": {}, "gaps": [gap]}))
"""
WORKER = """
Path("fixed-" + lane + ".txt").write_text("fixed")
"""


def test_a_probe_cannot_choose_the_shell_agent_for_its_gaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pwned = tmp_path / "PWNED"
    config = '[defaults]\nagent = "worker"\nkill_grace_s = 0.5\n'
    config += script_agent(tmp_path, "prober", PROBER % pwned)
    config += script_agent(tmp_path, "worker", WORKER)
    config += '\n[probes.review]\nagent = "prober"\nprompt = "Review."\n'
    repo = pipeline_repo(tmp_path, monkeypatch, {"a.py": "a = 1\n"}, config, init=False)

    result = cli(repo, "full")

    assert result.code == 0, result.out + result.err
    assert not pwned.exists()
    assert lanes(repo)["cleanup"]["agent"] == "worker"
    assert lanes(repo)["cleanup"]["status"] == "merged"
    assert "fixed-cleanup.txt" in on_main(repo)
    said = [line for line in result.out.splitlines() if "allow_agents" in line]
    assert said == [
        "plan: probe 'review' asked for agent 'shell' for gap 'cleanup'; [probes.review] "
        "allow_agents in orchestree.toml does not list it, so that lane gets 'worker'"
    ]


def test_a_probe_allowed_an_agent_by_the_config_may_choose_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SHELL_DEFAULTS.replace('"shell"', '"worker"')
    config += script_agent(tmp_path, "worker", WORKER)
    config += '\n[probes.review]\nbuiltin = "markers"\nallow_agents = ["shell"]\n'
    gap = {"id": "g", "title": "G", "tasks": ["true"], "agent": "shell"}
    result_json = json.dumps({"probe": "review", "summary": "s", "metrics": {}, "gaps": [gap]})
    files = {"a.py": "a = 1\n", "docs/_generated/review/state_probe.json": result_json}
    repo = pipeline_repo(tmp_path, monkeypatch, files, config)

    planned = cli(repo, "plan", "--dry-run", "--json")

    assert planned.code == 0, planned.err
    assert json.loads(planned.out)["lanes"]["g"]["agent"] == "shell"


# --- strict input ---------------------------------------------------------------------


def test_the_backup_is_only_ever_a_valid_tracker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"work": {"tasks": ["true"]}})
    orch = repo / ".orchestration"
    path = orch / "tracker.json"
    data = json.loads(path.read_text("utf-8"))
    data["lanes"]["work"]["attempts"] = "lots"  # what the helper now refuses, written directly
    path.write_text(json.dumps(data), "utf-8")
    helper = orch / "access_tracker.py"
    for step in range(2):
        update = json.dumps({"lanes": {"work": {"progress": f"step {step}"}}})
        proc = subprocess.run(
            ["python3", str(helper), str(path), update], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        valid_tracker(orch / "tracker.json.bak")

    status = cli(repo, "status", "--json")

    assert status.code == 0, status.err
    shown = json.loads(status.out)["lanes"]["work"]
    assert (shown["attempts"], shown["progress"]) == (0, "step 1")
    assert cli(repo, "add-lane", "more", "{}").code == 0
    valid_tracker(orch / "tracker.json.bak")
    assert valid_tracker(path).lanes["work"].attempts == 0  # the file is whole again
    assert "lanes.work.attempts changed" in ignored(repo)


def test_nan_written_into_the_tracker_never_reaches_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"work": {"tasks": ["true"]}})
    path = repo / ".orchestration" / "tracker.json"
    with serve(repo) as port:
        status, _, body = request(port)
        assert status == 200
        access_tracker.loads_strict(body.decode())
        good = path.read_text("utf-8")
        for bad in ("NaN", "Infinity", "1e400"):
            text = good.replace('"progress":null', f'"progress":{bad}', 1)
            assert bad in text
            path.write_text(text, "utf-8")
            _, _, body = request(port)
            sent = access_tracker.loads_strict(body.decode())  # valid JSON, NaN or not
            assert sent["tracker"]["lanes"]["work"]["status"] == "pending"  # the last good one
            assert "is not valid JSON" in sent["notice"]
    shown = cli(repo, "status", "--json")
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["lanes"]["work"]["progress"] is None


def test_a_lane_id_with_a_trailing_newline_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    before = (repo / ".orchestration" / "tracker.json").read_bytes()

    result = cli(repo, "add-lane", "work\n", '{"tasks": ["true"]}')

    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "lane id 'work\\n' may hold only lowercase letters" in result.err
    assert (repo / ".orchestration" / "tracker.json").read_bytes() == before


def test_the_fork_server_takes_one_json_string_a_line_and_refuses_the_rest(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "lane.spec.json"  # unreadable as a spec: the forked child just fails
    server = subprocess.Popen(
        [PYTHON, "-m", "orchestree.executors.supervisor", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        lines = [b"not json\n", json.dumps(f"{spec}\nsecond").encode() + b"\n", b"42\n"]
        for line in lines:
            server.stdin.write(line)
            server.stdin.flush()
            assert server.stdout.readline() == b"refused\n"
        server.stdin.write(json.dumps(str(spec)).encode() + b"\n")
        server.stdin.flush()
        assert server.stdout.readline().strip().isdigit()
    finally:
        server.stdin.close()
        server.wait(10)
        server.stdout.close()


def test_a_config_number_given_as_text_or_infinite_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"work": {"tasks": ["touch ran"]}})
    for bad, key in (('max_parallel = "4"', "defaults.max_parallel"),
                     ("kill_grace_s = inf", "defaults.kill_grace_s")):  # fmt: skip
        (repo / "orchestree.toml").write_text(f'[defaults]\nagent = "shell"\n{bad}\n')

        result = cli(repo, "execute")

        assert result.code == 2
        assert result.err.count("\n") == 1
        assert str(repo / "orchestree.toml") in result.err
        assert f"key {key!r}" in result.err
        assert lanes(repo)["work"]["status"] == "pending"
        assert not (repo / ".worktrees").exists()


# --- the ledger itself ------------------------------------------------------------------


def test_a_torn_tracker_file_gives_way_to_the_ledger_and_is_repaired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"work": {"tasks": ["true"]}})
    path = repo / ".orchestration" / "tracker.json"
    path.write_bytes(b'{"version": "1.0.0", "lanes": {"wo')

    shown = cli(repo, "status", "--json")

    assert shown.code == 0, shown.err
    assert sorted(json.loads(shown.out)["lanes"]) == ["work"]
    assert cli(repo, "execute").code == 0
    assert valid_tracker(path).lanes["work"].status == "completed"
    assert "tracker.json (not valid JSON)" in ignored(repo)


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [
        (lambda raw: raw.replace(b'"tasks":["true"]', b'"tasks":["rm -rf ~"]'), "does not match"),
        (lambda raw: b"", "does not match its key"),
    ],
    ids=["edited", "emptied"],
)
def test_a_ledger_changed_outside_orchestree_stops_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: Any, needle: str
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    add_lanes(repo, {"work": {"tasks": ["true"]}})
    ledger = repo / ".orchestration" / "ledger" / "ledger.json"
    ledger.write_bytes(tamper(ledger.read_bytes()))
    before = (repo / ".orchestration" / "tracker.json").read_bytes()
    for args in (["status"], ["execute"], ["tracker", "update", "{}"], ["cancel", "work"]):
        result = cli(repo, *args)
        assert result.code == 3, (args, result.err)
        assert result.err.count("\n") == 1
        assert f"{ledger} {needle}" in result.err
    assert (repo / ".orchestration" / "tracker.json").read_bytes() == before
    assert not (repo / ".worktrees").exists()


def test_the_ledger_key_is_readable_by_its_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, monkeypatch)
    for name in ("ledger.key", "ledger.json"):
        assert (repo / ".orchestration" / "ledger" / name).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("model", "fields", "needle"),
    [
        ("agent", {"pid": -5}, "pid"),
        ("agent", {"pid": 0}, "pid"),
        ("lane", {"cost_usd": float("nan")}, "finite number"),
        ("lane", {"timeout_s": float("inf")}, "finite number"),
        ("lane", {"port": 0}, "port"),
        ("lane", {"attempts": "lots"}, "attempts"),
        ("lane", {"order": -1}, "order"),
    ],
)
def test_every_tracker_field_has_its_type_and_range(
    model: str, fields: dict[str, Any], needle: str
) -> None:
    from pydantic import ValidationError

    from orchestree.models import Agent, Lane

    base = {"worktree": "w", "lane": "x", "branch": "lane-x"} if model == "agent" else {}
    with pytest.raises(ValidationError, match=needle):
        (Agent if model == "agent" else Lane).model_validate({**base, **fields})
