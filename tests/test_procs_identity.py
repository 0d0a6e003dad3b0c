"""procs: who a process is, whether it is still ours, and when it is gone (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from clock_helpers import in_namespace, stat_copy, step_btime
from exec_helpers import wait_for
from orchestree import procs
from orchestree.procs import Identity

HZ = os.sysconf("SC_CLK_TCK")


def psutil_ticks(pid: int) -> int:
    """The start in ticks since boot as psutil computes it (wall-clock start - btime)."""
    return round((psutil.Process(pid).create_time() - psutil.boot_time()) * HZ)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _zombie() -> subprocess.Popen[bytes]:
    child = subprocess.Popen(["true"])
    wait_for(lambda: (procs.stat_fields(child.pid) or ["?"])[0] == "Z", what="a zombie")
    return child


def test_identity_is_start_ticks_since_boot_and_the_boot_id(
    sleeper: subprocess.Popen[bytes],
) -> None:
    ident = procs.identity(sleeper.pid)
    assert ident is not None
    assert ident.pid == sleeper.pid
    # psutil reads the same field (and adds btime, which we take away again).
    assert ident.ticks == psutil_ticks(sleeper.pid)
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert ident.boot_id == boot
    assert procs.identity(sleeper.pid) == ident  # stable for the life of the process


def test_a_command_name_with_spaces_and_parentheses_is_parsed_after_the_last_paren() -> None:
    # comm "x) (y z 7": a naive split of /proc/PID/stat would shift every field.
    code = (
        "import ctypes, time; ctypes.CDLL(None).prctl(15, b'x) (y z 7', 0, 0, 0); "
        "print('named', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"named\n"
        assert Path(f"/proc/{proc.pid}/comm").read_text() == "x) (y z 7\n"
        ident = procs.identity(proc.pid)
        assert ident is not None
        assert ident.ticks == psutil_ticks(proc.pid)
        assert procs.parent_of(proc.pid) == os.getpid()
    finally:
        proc.kill()
        proc.communicate()


def test_is_ours_only_for_the_very_process(sleeper: subprocess.Popen[bytes]) -> None:
    ident = procs.identity(sleeper.pid)
    assert ident is not None
    assert procs.is_ours(ident)
    # The same pid started at another tick is a process that reused the pid.
    assert not procs.is_ours(Identity(ident.pid, ident.ticks + 1, ident.boot_id))
    # The same pid and ticks in another boot is another process too.
    assert not procs.is_ours(Identity(ident.pid, ident.ticks, "another-boot"))
    assert not procs.is_ours(None)
    sleeper.kill()
    sleeper.wait()
    assert procs.identity(sleeper.pid) is None
    assert not procs.is_ours(ident)


def test_a_zombie_has_no_identity() -> None:
    child = _zombie()
    try:
        assert procs.identity(child.pid) is None
        assert not procs.alive(child.pid)
    finally:
        child.wait()


def test_identity_text_round_trips_and_refuses_garbage() -> None:
    ident = Identity(4242, 987654, "0723938a-d03a-4278-aac5-44fdcd68833b")
    assert Identity.from_text(ident.as_text()) == ident
    for bad in ("", "4242", "4242:x:boot", "x:1:boot", "1:2:", "1:2:3:4"):
        assert Identity.from_text(bad) is None
    assert Identity.recorded(4242, 987654, "b") == Identity(4242, 987654, "b")
    assert Identity.recorded(4242, None, "b") is None
    assert Identity.recorded(4242, 987654, None) is None
    assert Identity.recorded(0, 987654, "b") is None


def test_a_clock_step_does_not_change_an_identity(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """Read inside a namespace whose btime moved by an hour: the same identity, where
    the wall-clock start time psutil gives moves by the hour."""
    copy = stat_copy(tmp_path)
    step_btime(copy, 3600)
    code = (
        "import sys, psutil; from orchestree import procs; "
        "print(procs.identity(int(sys.argv[1])).as_text()); "
        "print(psutil.Process(int(sys.argv[1])).create_time())"
    )
    argv = in_namespace(copy, [sys.executable, "-c", code, str(sleeper.pid)])
    inside = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    outside = procs.identity(sleeper.pid)
    assert outside is not None
    assert inside[0] == outside.as_text()
    wall = psutil.Process(sleeper.pid).create_time()
    assert float(inside[1]) - wall == pytest.approx(3600, abs=1)


def test_a_pidfd_tells_when_the_process_exits(sleeper: subprocess.Popen[bytes]) -> None:
    ident = procs.identity(sleeper.pid)
    assert ident is not None
    fd = procs.open_pidfd(ident)
    assert fd is not None
    try:
        assert not procs.pidfd_exited(fd)
        assert not procs.confirm_gone(ident, fd)
        sleeper.kill()
        assert procs.pidfd_exited(fd, timeout=5)
        assert procs.confirm_gone(ident, fd)
    finally:
        os.close(fd)


def test_no_pidfd_for_an_identity_that_is_not_the_process(
    sleeper: subprocess.Popen[bytes],
) -> None:
    ident = procs.identity(sleeper.pid)
    assert ident is not None
    assert procs.open_pidfd(Identity(ident.pid, ident.ticks + 1, ident.boot_id)) is None
    assert procs.open_pidfd(Identity(ident.pid, ident.ticks, "another-boot")) is None


def test_gone_needs_two_signs(sleeper: subprocess.Popen[bytes]) -> None:
    ident = procs.identity(sleeper.pid)
    assert ident is not None
    assert not procs.confirm_gone(ident)  # alive: no
    sleeper.kill()
    sleeper.wait()
    began = time.monotonic()
    # Its process is gone, but the other sign (e.g. "no result file") says no.
    assert not procs.confirm_gone(ident, other_sign=lambda: False, wait_s=0.1)
    assert time.monotonic() - began >= 0.1  # the identity was read a second time
    assert procs.confirm_gone(ident, other_sign=lambda: True, wait_s=0.1)


def test_a_process_that_comes_back_on_the_second_read_is_not_gone(
    sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    ident = procs.identity(sleeper.pid)
    assert ident is not None
    # One failed read (a transient misread) is not enough when a second read, after a
    # short wait, finds the recorded process alive.
    answers = iter([False])
    real = procs.is_ours
    monkeypatch.setattr(procs, "is_ours", lambda found: next(answers, None) or real(found))
    assert not procs.confirm_gone(ident, wait_s=0.05)
    assert next(answers, "used") == "used"


def test_the_supervisor_is_recognised_by_what_it_runs(sleeper: subprocess.Popen[bytes]) -> None:
    assert procs.supervisor_identity(sleeper.pid) is None
    server = procs.spawn(
        [sys.executable, "-m", procs.SUPERVISOR, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: procs.SUPERVISOR in procs.cmdline(server.pid), what="the server")
        assert procs.supervisor_identity(server.pid) == procs.identity(server.pid)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    assert procs.supervisor_identity(server.pid) is None
