"""lanebook.py: how an attempt's events become the lane's state in the real tracker of
a real repository, and the one line said for each. A finished attempt is judged
(completed, retried, failed, cancelled); an authentication failure holds the agent's
other pending lanes; the summary's exit code follows the lanes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lanes_helpers import add_lanes, commit_on_lane, make_repo, sh
from orchestree import git
from orchestree.access_tracker import PROGRESS_MAX_CHARS
from orchestree.executors.attempt import LaneUpdate
from orchestree.lanebook import LaneBook, Summary
from orchestree.layout import results_dir
from orchestree.procs import Identity
from orchestree.repo import Repo, open_repo

RECORDED = Path(__file__).parent / "agents" / "data"
NOT_LOGGED_IN = (RECORDED / "claude-not-logged-in.txt").read_text(encoding="utf-8")
CONFIG = '[defaults]\nagent = "shell"\nmax_attempts = 2\n'


class Book:
    """A LaneBook on a real repository, with the lines it said."""

    def __init__(self, root: Path, scope: set[str] | None = None) -> None:
        self.said: list[str] = []
        self.repo: Repo = open_repo(root)
        self.book = LaneBook(
            self.repo, self.said.append, lambda k, _kind: scope is None or k in scope
        )

    def lane(self, lane_id: str) -> Any:
        return self.repo.store.read().lanes[lane_id]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo", toml=CONFIG)
    add_lanes(root, {"a": {"tasks": ["echo a"]}, "b": {"tasks": ["echo b"]}})
    return root


def start(book: Book, lane_id: str, attempt: int = 1) -> str:
    base = book.repo.store.read().base_commit
    book.book.claim(lane_id, attempt, base, 20000 + attempt)
    return base


def done(lane_id: str, attempt: int = 1, **kw: Any) -> LaneUpdate:
    fields: dict[str, Any] = {"reason": "exited", "exit_code": 0, **kw}
    return LaneUpdate(lane_id, attempt, "finished", **fields)


def test_claim_marks_the_lane_running_and_records_its_agent(root: Path) -> None:
    book = Book(root)
    base = start(book, "a")
    tracker = book.repo.store.read()
    lane = tracker.lanes["a"]
    assert (lane.status, lane.attempts, lane.start_commit, lane.port) == ("running", 1, base, 20001)
    assert lane.started_at is not None
    assert lane.finished_at is None
    agent = tracker.agents["agent-a"]
    assert (agent.lane, agent.branch, agent.agent, agent.status) == (
        "a",
        "lane-a",
        "shell",
        "created",
    )
    assert agent.worktree == ".worktrees/agent-a"
    assert agent.log == ".orchestration/logs/agent-a.log"


def test_a_second_claim_keeps_the_first_start_commit(root: Path) -> None:
    book = Book(root)
    base = start(book, "a")
    book.book.settle("a", 1, "pending", {"error": "boom"}, 1)
    book.book.claim("a", 2, "f" * 40, 20002)
    lane = book.lane("a")
    assert (lane.start_commit, lane.attempts, lane.error) == (base, 2, None)


def test_submitted_and_started_record_the_handle_pid_and_where(root: Path) -> None:
    book = Book(root)
    start(book, "a")
    book.book.submitted("a", "local:a:1:xyz")
    ident = Identity(pid=4242, ticks=99, boot_id="boot")
    book.book.started(LaneUpdate("a", 1, "started", pid=4242, pid_identity=ident))
    agent = book.repo.store.read().agents["agent-a"]
    assert (agent.handle, agent.status, agent.pid, agent.pid_ticks) == (
        "local:a:1:xyz", "running", 4242, 99,
    )  # fmt: skip
    assert book.said == ["→ a: started (attempt 1, pid 4242)"]
    start(book, "b")
    book.book.started(LaneUpdate("b", 1, "started", host="node-2", worker="tcp://10.0.0.2:1"))
    assert book.said[-1] == "→ b: started (attempt 1, on node-2 (tcp://10.0.0.2:1))"
    assert (book.lane("b").host, book.lane("b").worker) == ("node-2", "tcp://10.0.0.2:1")


def test_progress_is_capped_and_bad_data_is_dropped(root: Path) -> None:
    book = Book(root)
    start(book, "a")
    book.book.progress("a", "x" * (PROGRESS_MAX_CHARS + 50), {"step": 1})
    lane = book.lane("a")
    assert lane.progress == "x" * PROGRESS_MAX_CHARS
    assert lane.data == {"step": 1}
    book.book.progress("a", "next", {"huge": "y" * (70 * 1024)})  # over the data cap
    lane = book.lane("a")
    assert (lane.progress, lane.data) == ("next", {"step": 1})


def test_a_finished_attempt_that_exited_zero_completes_with_its_changed_files(root: Path) -> None:
    book = Book(root)
    base = start(book, "a")
    head = commit_on_lane(root, "a", {"a.txt": "a\n", f"{results_dir('a')}/out.md": "r\n"})
    book.book.finished(done("a", head=head, changed=None), head, None, stopping=False)
    lane = book.lane("a")
    assert lane.status == "completed"
    assert lane.changed_files == sorted(git.changed_files(root, base, head))
    assert lane.results == [f"{results_dir('a')}/out.md"]
    assert (lane.head_commit, lane.no_changes, lane.error) == (head, False, None)
    assert book.repo.store.read().agents["agent-a"].status == "completed"
    assert book.said == ["✓ a: completed"]
    assert book.book.summary.statuses == {"a": "completed"}
    assert book.book.summary.exit_code == 0


def test_the_executors_changed_list_is_used_only_for_the_head_it_describes(root: Path) -> None:
    book = Book(root)
    start(book, "a")
    head = commit_on_lane(root, "a", {"real.txt": "r\n"})
    book.book.finished(done("a", head=head, changed=["told.txt"]), head, None, stopping=False)
    assert book.lane("a").changed_files == ["told.txt"]
    start(book, "b")
    other = commit_on_lane(root, "b", {"real.txt": "r\n"})
    book.book.finished(done("b", head="0" * 40, changed=["stale.txt"]), other, None, False)
    assert book.lane("b").changed_files == ["real.txt"]


def test_a_lane_that_changed_nothing_says_so(root: Path) -> None:
    book = Book(root)
    base = start(book, "a")
    book.book.finished(done("a", head=base, changed=[]), base, None, stopping=False)
    lane = book.lane("a")
    assert (lane.status, lane.no_changes) == ("completed", True)
    assert book.said == ["✓ a: completed: completed but changed nothing"]


def test_a_failed_attempt_is_retried_until_max_attempts_then_failed(root: Path) -> None:
    book = Book(root)
    start(book, "a")
    fail = {"exit_code": 3, "output": "+ make\nbroken build\n"}
    book.book.finished(done("a", 1, **fail), None, None, stopping=False)
    lane = book.lane("a")
    assert (lane.status, lane.error) == ("pending", "exited with code 3: broken build")
    assert book.said[-1] == "↻ a: pending (will retry): exited with code 3: broken build"
    start(book, "a", 2)
    book.book.finished(done("a", 2, **fail), None, None, stopping=False)
    assert book.lane("a").status == "failed"
    assert book.repo.store.read().agents["agent-a"].exit_code == 3
    assert book.said[-1] == "✗ a: failed: exited with code 3: broken build"
    assert book.book.summary.exit_code == 1


def test_an_untrusted_attempt_is_never_retried(root: Path) -> None:
    book = Book(root)
    start(book, "a")
    update = done("a", reason="untrusted", exit_code=None, error="it rewrote .git")
    book.book.finished(update, None, None, stopping=False)
    assert book.lane("a").status == "failed"
    assert book.lane("a").error == "it rewrote .git"


def test_a_stopped_attempt_is_cancelled_not_retried(root: Path) -> None:
    book = Book(root)
    start(book, "a")
    book.book.finished(done("a", reason="cancelled", exit_code=None), None, None, False)
    assert book.lane("a").status == "cancelled"
    start(book, "b")  # an agent that failed while the run was stopping
    book.book.finished(done("b", exit_code=1, output="x\n"), None, None, stopping=True)
    assert book.lane("b").status == "cancelled"


def test_an_authentication_failure_holds_the_agents_other_pending_lanes(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", toml=CONFIG)
    lanes = {k: {"tasks": ["x"], "agent": "claude"} for k in ("a", "b", "c", "away")}
    lanes["sh"] = {"tasks": ["x"]}
    lanes["probe"] = {"tasks": ["x"], "agent": "claude", "kind": "probe"}
    add_lanes(root, lanes)
    book = Book(root, scope={"a", "b", "c", "sh"})
    start(book, "a")
    update = done("a", exit_code=1, output=NOT_LOGGED_IN)
    book.book.finished(update, None, None, stopping=False)
    tracker = book.repo.store.read()
    statuses = {k: lane.status for k, lane in tracker.lanes.items()}
    assert statuses == {
        "a": "failed", "b": "blocked", "c": "blocked", "away": "pending", "sh": "pending",
        "probe": "pending",
    }  # fmt: skip
    why = tracker.lanes["b"].error or ""
    assert why.startswith("agent 'claude' is not logged in (Not logged in")
    assert (tracker.lanes["b"].held, tracker.lanes["c"].held, tracker.lanes["a"].held) == (
        "claude", "claude", None
    )  # fmt: skip
    assert tracker.lanes["a"].error == "Not logged in · Please run /login"
    assert book.book.summary.held == {"claude": why}
    assert book.said == [
        "✗ b, c: blocked: agent 'claude' is not logged in (see below)",
        "✗ a: failed: Not logged in · Please run /login",
    ]
    assert book.book.summary.exit_code == 1


def test_waiting_marks_only_pending_lanes_and_clears(root: Path) -> None:
    book = Book(root)
    start(book, "b")
    book.book.waiting({"a": True, "b": True, "gone": True})
    assert (book.lane("a").waiting_for, book.lane("b").waiting_for) == ("memory", None)
    assert book.said[0] == "… a: waiting for memory ([defaults] min_free_mb)"
    book.book.waiting({"a": False})
    assert book.lane("a").waiting_for is None


def test_block_records_why_and_says_it_unless_quiet(root: Path) -> None:
    book = Book(root)
    book.book.block({"a": "dependency x failed"})
    book.book.block({"b": "held"}, quiet=True)
    assert (book.lane("a").status, book.lane("a").error) == ("blocked", "dependency x failed")
    assert book.lane("b").status == "blocked"
    assert book.said == ["✗ a: blocked: dependency x failed"]
    assert book.book.summary.statuses == {"a": "blocked", "b": "blocked"}


def test_summary_exit_code_follows_the_lanes() -> None:
    assert Summary().exit_code == 0
    assert Summary({"a": "completed", "b": "merged"}).exit_code == 0
    for bad in ("failed", "blocked", "cancelled", "conflict", "verify_failed"):
        assert Summary({"a": "completed", "b": bad}).exit_code == 1
    assert Summary({"a": "completed"}, interrupted=True).exit_code == 130


def probe_root(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo", toml=CONFIG)
    add_lanes(root, {"scan": {"tasks": ["x"], "kind": "probe"}})
    return root


def state(probe: str) -> str:
    return json.dumps({"probe": probe, "summary": "fine"})


def test_a_probe_that_ran_elsewhere_is_judged_on_the_output_in_its_branch(tmp_path: Path) -> None:
    root = probe_root(tmp_path)
    book = Book(root)
    start(book, "scan")
    rel = f"{results_dir('scan')}/state_probe.json"
    head = commit_on_lane(root, "scan", {rel: state("scan")}, worktree=False)
    book.book.finished(done("scan", head=head), head, None, stopping=False)
    assert book.lane("scan").status == "completed"
    assert book.lane("scan").results == [rel]
    assert (root / ".orchestration" / "runs" / "scan.state_probe.json").is_file()


def test_a_probe_whose_output_is_unusable_fails(tmp_path: Path) -> None:
    root = probe_root(tmp_path)
    book = Book(root)
    start(book, "scan")
    rel = f"{results_dir('scan')}/state_probe.json"
    head = commit_on_lane(root, "scan", {rel: "{not json"}, worktree=False)
    book.book.finished(done("scan", head=head), head, None, stopping=False)
    lane = book.lane("scan")
    assert lane.status == "pending"  # max_attempts = 2: the probe is retried
    assert "scan.state_probe.json" in (lane.error or "")
    assert sh(root, "status", "--porcelain") == ""  # read from the branch; nothing written
