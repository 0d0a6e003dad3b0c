from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from _monitor_server import request, serve
from _monitor_trackers import agent, lane, tracker, write
from orchestree.errors import EnvironmentRefused
from orchestree.monitor import run_monitor
from orchestree.monitor.views import AgentView, LaneView, LaneWarning, Snapshot, Statistics
from orchestree.monitor.web import LOG_TAIL_DEFAULT, LOG_TAIL_MAX, split_host

LAUNCH = (
    "import sys; from pathlib import Path; from orchestree.monitor import run_monitor; "
    "host = sys.argv[2] or None; port = int(sys.argv[3]) if sys.argv[3] else None; "
    "sys.exit(run_monitor(Path(sys.argv[1]), web=True, once=False, interval=1, "
    "host=host, port=port))"
)


def names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    data = tracker(
        {
            "db-projection": lane(status="running", progress="50% complete", attempts=1),
            "api": lane(status="failed", error="exit code 1"),
            "quiet": lane(status="completed"),
        },
        {"agent-db-projection": agent("db-projection", status="running")},
        phase=3,
        status="running",
    )
    write(root / ".orchestration" / "tracker.json", data)
    logs = root / ".orchestration" / "logs"
    logs.mkdir()
    (logs / "agent-db-projection.log").write_text("started\n<b>step 1</b>\n", encoding="utf-8")
    (logs / "agent-api.log").write_bytes(b"x" * (1024 * 1024 - 4) + b"END\n")
    secret = root / "secret.txt"
    secret.write_text("do not serve me", encoding="utf-8")
    (logs / "agent-quiet.log").symlink_to(secret)
    return root


@pytest.fixture(scope="module")
def port(repo: Path) -> Iterator[int]:
    with serve(repo) as bound:
        yield bound


def test_status_is_the_tracker_plus_its_snapshot(repo: Path, port: int) -> None:
    status, headers, body = request(port)
    assert status == 200
    assert headers["content-type"] == "application/json"
    data = json.loads(body)
    assert set(data) == {"tracker", "snapshot", "timeline", "notice"}
    assert set(data["timeline"]) == {"now", "start", "lanes"}  # the attempts (attempts.py)
    assert data["tracker"] == json.loads((repo / ".orchestration" / "tracker.json").read_text())
    assert data["notice"] is None
    snap = data["snapshot"]
    assert set(snap) == names(Snapshot)
    assert set(snap["statistics"]) == names(Statistics)
    assert all(set(item) == names(LaneView) for item in snap["lanes"])
    assert all(set(item) == names(AgentView) for item in snap["agents"])
    assert all(set(item) == names(LaneWarning) for item in snap["warnings"])
    assert [item["id"] for item in snap["lanes"]] == ["db-projection", "api", "quiet"]
    assert snap["statistics"]["by_status"]["running"] == 1
    assert snap["phase_name"] == "execute"
    assert {w["kind"] for w in snap["warnings"]} == {"failed"}


def test_status_follows_a_replaced_tracker(tmp_path: Path) -> None:
    path = tmp_path / ".orchestration" / "tracker.json"
    with serve(tmp_path) as bound:
        status, _, body = request(bound)
        assert status == 503
        data = json.loads(body)
        assert data["tracker"] is None
        assert "does not exist; run `orchestree init`" in data["notice"]
        write(path, tracker({"a": lane(status="running")}))
        status, _, body = request(bound)
        assert status == 200
        assert json.loads(body)["snapshot"]["lanes"][0]["status"] == "running"
        path.write_text("{", encoding="utf-8")
        status, _, body = request(bound)
        assert status == 200, "the last good tracker stays on show"
        assert json.loads(body)["notice"].startswith("showing the last good read: ")


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "localhost.evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "127.0.0.1:1",
        "[::2]:{port}",
        "127.0.0.1:{port}:{port}",
        "",
        None,
    ],
)
def test_foreign_host_headers_are_refused(port: int, host: str | None) -> None:
    header = None if host is None else (host.format(port=port) or " ")
    status, headers, body = request(port, host=header)
    if host is None:
        assert status == 400, "HTTP/1.1 without Host: uvicorn refuses it before we see it"
        return
    assert status == 421
    assert b"host not allowed" in body
    assert "default-src 'none'" in headers["content-security-policy"]


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "localhost", "[::1]:{port}"],
)
def test_our_own_host_names_are_served(port: int, host: str) -> None:
    assert request(port, host=host.format(port=port))[0] == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/api/status", "/", "/api/log/api"])
def test_nothing_can_be_changed(port: int, method: str, path: str) -> None:
    status, headers, _ = request(port, path, method=method, body=b'{"lanes": {}}')
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


def test_head_is_answered_without_a_body(port: int) -> None:
    status, _, body = request(port, method="HEAD")
    assert (status, body) == (200, b"")


def test_the_page_and_its_assets_are_served_with_a_strict_policy(port: int) -> None:
    status, headers, body = request(port, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b'<script src="/static/app.js">' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = request(port, "/static/app.js")
    assert status == 200
    assert b"textContent" in body
    for sink in (b".innerHTML", b".outerHTML", b"insertAdjacentHTML", b"document.write", b"eval("):
        assert sink not in body
    assert request(port, "/static/../web.py")[0] == 404
    assert request(port, "/favicon.ico")[0] == 204


def test_a_log_tail_is_served_for_a_known_lane(port: int) -> None:
    status, _, body = request(port, "/api/log/db-projection")
    assert status == 200
    data = json.loads(body)
    assert data == {
        "lane": "db-projection",
        "log": ".orchestration/logs/agent-db-projection.log",
        "size": 22,
        "text": "started\n<b>step 1</b>\n",
        "truncated": False,
    }


def test_a_log_tail_is_capped(port: int) -> None:
    data = json.loads(request(port, "/api/log/api")[2])
    assert (data["size"], data["truncated"]) == (1024 * 1024, True)
    assert len(data["text"]) == LOG_TAIL_DEFAULT
    assert data["text"].endswith("END\n")
    data = json.loads(request(port, "/api/log/api?bytes=99999999")[2])
    assert len(data["text"]) == LOG_TAIL_MAX
    assert request(port, "/api/log/api?bytes=lots")[0] == 400


def test_a_log_for_an_unknown_lane_is_refused(port: int) -> None:
    status, _, body = request(port, "/api/log/nope")
    assert status == 404
    assert json.loads(body)["error"] == "no lane 'nope' in the tracker"


@pytest.mark.parametrize(
    "path",
    [
        "/api/log/../../etc/passwd",
        "/api/log/..%2F..%2Fetc%2Fpasswd",
        "/api/log/%2Fetc%2Fpasswd",
        "/api/log/db-projection/../../secret.txt",
        "/api/log/..",
        "/api/log/DB-projection",
        "/api/log/db-projection.lock",
    ],
)
def test_a_log_request_with_a_path_in_it_is_refused(port: int, path: str) -> None:
    status, _, body = request(port, path)
    assert status == 400
    assert b"do not serve me" not in body
    assert b"root:" not in body


def test_a_log_that_is_a_symlink_is_not_followed(port: int) -> None:
    status, _, body = request(port, "/api/log/quiet")
    assert status == 403
    assert b"do not serve me" not in body


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost:5555", ("localhost", 5555)),
        ("[::1]:80", ("::1", 80)),
        ("[::1]", ("::1", None)),
        ("[::1", None),
        ("a:b", None),
        ("", None),
        (":80", None),
    ],
)
def test_host_headers_are_parsed_strictly(
    value: str, parsed: tuple[str, int | None] | None
) -> None:
    assert split_host(value) == parsed


def test_a_port_in_use_is_one_line_and_exit_3(repo: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(EnvironmentRefused) as caught:
            run_monitor(repo, web=True, once=False, interval=1, host="127.0.0.1", port=busy)
    assert caught.value.exit_code == 3
    message = str(caught.value)
    assert message == (
        f"port {busy} on 127.0.0.1 is in use; stop the program using it "
        "or pick another port with --port"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_monitor_process(repo: Path, host: str, port: str) -> tuple[int, str, int]:
    """Start the web monitor as a process, wait until it answers, then Ctrl-C it.
    Returns (its exit code, its stderr, the status of one request)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(repo), host, port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        warning = ""
        if line.startswith("warning:"):
            warning, line = line, proc.stderr.readline().decode()
        served = int(line.rsplit(":", 1)[1].split("/")[0])
        status = 0
        deadline = time.monotonic() + 10
        while status == 0 and time.monotonic() < deadline:
            try:
                status = request(served)[0]
            except ConnectionRefusedError:
                time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=10)
        return proc.returncode, warning + line + rest.decode(), status
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_monitor_takes_host_and_port_from_the_config_and_stops_on_ctrl_c(
    repo: Path, tmp_path: Path
) -> None:
    port = _free_port()
    root = tmp_path / "configured"
    (root / ".orchestration").mkdir(parents=True)
    os.link(repo / ".orchestration" / "tracker.json", root / ".orchestration" / "tracker.json")
    (root / "orchestree.toml").write_text(f"[monitor]\nport = {port}\n", encoding="utf-8")
    code, err, status = _run_monitor_process(root, "", "")
    assert (code, status) == (0, 200)
    assert f"orchestree monitor: http://127.0.0.1:{port}/ (Ctrl-C to stop)" in err
    assert "warning" not in err


def test_listening_beyond_loopback_warns(repo: Path) -> None:
    code, err, status = _run_monitor_process(repo, "0.0.0.0", str(_free_port()))
    assert (code, status) == (0, 200)
    assert err.startswith("warning: the monitor on 0.0.0.0:")
    assert "reachable from other machines" in err
