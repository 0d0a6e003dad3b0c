"""procs: the one place that starts processes (real processes), and that it is the only one."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

from exec_helpers import process_alive, wait_for
from orchestree import procs

SRC = Path(procs.__file__).parent


def test_a_spawned_process_has_a_session_of_its_own_and_no_stdin() -> None:
    proc = procs.spawn(
        [sys.executable, "-c", "import os, sys; print(os.getsid(0), repr(sys.stdin.read()))"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=20)
    sid, stdin = out.split()
    assert int(sid) == proc.pid  # its own session, so its own group: ended as one
    assert stdin == "''"  # /dev/null: an agent that waits on stdin does not hang


def test_arguments_never_pass_through_a_shell(tmp_path: Path) -> None:
    proc = procs.spawn(["echo", "$(touch pwned) ; rm -rf x"], cwd=tmp_path, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=20)
    assert out == b"$(touch pwned) ; rm -rf x\n"
    assert not (tmp_path / "pwned").exists()


def test_without_a_new_session_it_stays_in_ours() -> None:
    proc = procs.spawn(["sleep", "0.1"], new_session=False)
    try:
        assert os.getpgid(proc.pid) == os.getpgid(0)
    finally:
        proc.wait()


def test_a_child_started_to_die_with_its_parent_does(tmp_path: Path) -> None:
    """The parent is SIGKILLed; the kernel TERMs the child at once."""
    code = (
        "import sys, subprocess, time; from orchestree import procs; "
        "child = procs.spawn(['sleep', '300'], stdout=subprocess.DEVNULL, die_with_parent=True); "
        "print(child.pid, flush=True); time.sleep(300)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert process_alive(child)
    parent.kill()
    parent.communicate()
    wait_for(lambda: not process_alive(child), 5, "the child to die with its parent")


def test_a_child_started_plainly_outlives_its_parent() -> None:
    code = (
        "import sys, subprocess, time; from orchestree import procs; "
        "child = procs.spawn(['sleep', '300'], stdout=subprocess.DEVNULL); "
        "print(child.pid, flush=True); time.sleep(300)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.communicate()
    try:
        assert process_alive(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_fork_runs_the_child_and_exits_with_its_code() -> None:
    pid = procs.fork(lambda: 7)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7

    def boom() -> int:
        raise RuntimeError("in the child")

    pid = procs.fork(boom)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1  # a raising child never returns here


# What starts, identifies or signals a process. `git.py` runs git (its own chokepoint);
# psutil stays for the web monitor's network addresses, never for identity.
FORBIDDEN = {
    ("subprocess", "Popen"),
    ("subprocess", "run"),
    ("subprocess", "call"),
    ("subprocess", "check_call"),
    ("subprocess", "check_output"),
    ("os", "fork"),
    ("os", "kill"),
    ("os", "killpg"),
    ("os", "pidfd_open"),
    ("signal", "pidfd_send_signal"),
    ("psutil", "Process"),
    ("psutil", "pid_exists"),
}
ALLOWED = {"procs.py": FORBIDDEN, "git.py": {("subprocess", "run")}}


def _calls(path: Path) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        func = node.func if isinstance(node, ast.Call) else None  # calls, not annotations
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
            continue
        if (func.value.id, func.attr) in FORBIDDEN:
            found.add((func.value.id, func.attr))
    return found


def test_only_procs_starts_identifies_or_signals_a_process() -> None:
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        extra = _calls(path) - ALLOWED.get(path.name, set())
        if extra:
            offenders[str(path.relative_to(SRC))] = sorted(extra)
    assert offenders == {}
    assert _calls(SRC / "procs.py") >= {("subprocess", "Popen"), ("os", "kill")}  # the scan sees
