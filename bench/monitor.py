"""Benchmark of the monitors on a 500-lane tracker (issue 6).

    .venv/bin/python bench/monitor.py [--lanes 500] [--requests 500] [--out FILE]

Measures, on this machine and over loopback only, with bounded loops:
1. `/api/status` latency over real HTTP (keep-alive), with the tracker unchanged and
   with the tracker replaced before every request (parsed anew each time);
2. the dashboard's update cost in Debian's chromium: a full poll (fetch, parse,
   render) and the render alone, for 500 lanes;
3. the console monitor's CPU use while it idle-refreshes every second in a real
   pseudo-terminal, from psutil cpu_times over 10 s.
Prints the figures against the targets (p99 < 50 ms, console < 5 % of one core) as a
markdown section, and writes it to --out when given.
"""

from __future__ import annotations

import argparse
import fcntl
import http.client
import json
import os
import platform
import pty
import select
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

import psutil
from _rows import emit

ROOT = Path(__file__).resolve().parents[1]
# One definition of a realistic many-lane tracker, shared with the layout tests.
sys.path.insert(0, str(ROOT / "tests"))
from _monitor_trackers import big_tracker, write  # noqa: E402

P99_TARGET_MS = 50.0
CPU_TARGET_PCT = 5.0
CHROMIUM = "/usr/bin/chromium"
SERVE = (
    "import sys; from pathlib import Path; from orchestree.monitor import run_monitor; "
    "sys.exit(run_monitor(Path(sys.argv[1]), web=True, once=False, interval=1, "
    "host='127.0.0.1', port=int(sys.argv[2])))"
)
CONSOLE = (
    "import fcntl, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "from pathlib import Path; from orchestree.monitor import run_monitor; "
    "sys.exit(run_monitor(Path(sys.argv[1]), web=False, once=False, interval=1, "
    "host=None, port=None))"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_server(repo: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(repo), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the web monitor did not start")


def http_latency(
    port: int, count: int, tracker_path: Path | None, data: dict[str, Any], server_pid: int
) -> dict[str, float]:
    """Latency of GET /api/status; with `tracker_path`, the tracker is replaced (new
    inode, so the server must parse it again) before each request, outside the timing."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples: list[float] = []
    size = 0
    budget = time.monotonic() + 60
    server = psutil.Process(server_pid)
    cpu_before = 0.0
    for i in range(count + 20):
        if tracker_path is not None:
            data["updated_at"] = f"2026-01-01T12:00:{i % 60:02d}.000Z"
            write(tracker_path, data)
        started = time.perf_counter()
        conn.request("GET", "/api/status", headers={"Host": f"127.0.0.1:{port}"})
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"/api/status answered {response.status}")
        if i == 19:
            cpu_before = sum(server.cpu_times()[:2])
        if i >= 20:  # the first requests warm caches and the connection
            samples.append(elapsed)
            size = len(body)
        if time.monotonic() > budget:
            break
    conn.close()
    # Server CPU per request does not depend on what else the machine runs; wall-clock
    # latency does (other processes take turns on the same cores).
    cpu_ms = (sum(server.cpu_times()[:2]) - cpu_before) * 1000 / len(samples)
    return {
        "n": len(samples),
        "cpu": cpu_ms,
        "p50": percentile(samples, 0.5),
        "p99": percentile(samples, 0.99),
        "max": max(samples),
        "kib": size / 1024,
    }


def dashboard_cost(port: int, lanes: int) -> dict[str, float] | None:
    if not os.access(CHROMIUM, os.X_OK):
        return None
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("#lanes tbody tr")).to_have_count(lanes, timeout=30_000)
        first = float(page.evaluate("window.orchestreeRenderMs"))
        # `render` and the page's state are the dashboard's own; time them in place.
        result = page.evaluate(
            """async (n) => {
                const polls = [], renders = [];
                for (let i = 0; i < n; i++) {
                    const t0 = performance.now();
                    const r = await fetch("/api/status", {cache: "no-store"});
                    const body = await r.json();
                    const t1 = performance.now();
                    // A changed update each time: progress text and durations move.
                    body.snapshot.lanes.forEach((l) => { l.progress = "step " + i; });
                    render(body);
                    const t2 = performance.now();
                    polls.push(t2 - t0);
                    renders.push(t2 - t1);
                }
                const med = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
                return {poll: med(polls), render: med(renders),
                        renderMax: Math.max(...renders)};
            }""",
            30,
        )
        browser.close()
    return {"first": first, **{k: float(v) for k, v in result.items()}}


def console_cpu(repo: Path, seconds: float) -> float:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSOLE, str(repo)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    try:

        def drain(for_s: float) -> None:
            # Read the terminal like an emulator would, so the monitor never blocks.
            end = time.monotonic() + for_s
            while (left := end - time.monotonic()) > 0:
                ready, _, _ = select.select([master], [], [], left)
                if ready:
                    os.read(master, 1 << 16)

        drain(3.0)  # start-up and the first frames are not idle
        ps = psutil.Process(proc.pid)
        before = ps.cpu_times()
        started = time.monotonic()
        drain(seconds)
        after = ps.cpu_times()
        wall = time.monotonic() - started
        used = (after.user - before.user) + (after.system - before.system)
        os.write(master, b"q")
        proc.wait(timeout=10)
        return 100 * used / wall
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def ratio(value: float, target: float) -> str:
    return f"{value / target:.2f}× of target"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=500)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--cpu-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        tracker_path = repo / ".orchestration" / "tracker.json"
        # Running lanes point at this process: alive, so every refresh checks real pids.
        data = big_tracker(args.lanes, running_pid=os.getpid())
        for agent in data["agents"].values():
            agent["pid_started"] = psutil.Process().create_time()
        write(tracker_path, data)
        tracker_kib = tracker_path.stat().st_size / 1024

        server, port = start_server(repo)
        try:
            load_before = os.getloadavg()[0]
            steady = http_latency(port, args.requests, None, data, server.pid)
            changing = http_latency(port, args.requests // 2, tracker_path, data, server.pid)
            write(tracker_path, data)
            page = dashboard_cost(port, args.lanes)
        finally:
            server.terminate()
            server.wait(timeout=10)
        cpu = console_cpu(repo, args.cpu_seconds)
        load_after = os.getloadavg()[0]

    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    lines = [
        "## Monitor",
        "",
        f"`python bench/monitor.py` on {os.cpu_count()} cores ({cpu_model}), Python "
        f"{platform.python_version()}; tracker of {args.lanes} lanes ({tracker_kib:.0f} KiB), "
        "every 7th lane running with a live pid, over loopback. Load average "
        f"{load_before:.1f} → {load_after:.1f} during the run (other work shares the cores, "
        "which stretches wall-clock figures; server CPU per request does not depend on it).",
        "",
        "| measure | figure | target | ratio |",
        "|---|---|---|---|",
        f"| `/api/status` p50, tracker unchanged ({steady['n']:.0f} requests, "
        f"{steady['kib']:.0f} KiB each) | {steady['p50']:.1f} ms | | |",
        f"| `/api/status` p99, tracker unchanged | {steady['p99']:.1f} ms "
        f"| < {P99_TARGET_MS:.0f} ms | {ratio(steady['p99'], P99_TARGET_MS)} |",
        f"| `/api/status` server CPU per request, tracker unchanged | {steady['cpu']:.1f} ms | | |",
        f"| `/api/status` p50, tracker replaced before each request ({changing['n']:.0f}) "
        f"| {changing['p50']:.1f} ms | | |",
        f"| `/api/status` p99, tracker replaced before each request | {changing['p99']:.1f} ms "
        f"| < {P99_TARGET_MS:.0f} ms | {ratio(changing['p99'], P99_TARGET_MS)} |",
        f"| `/api/status` server CPU per request, tracker replaced (parse included) "
        f"| {changing['cpu']:.1f} ms | | |",
    ]
    if page is None:
        lines.append(
            f"| dashboard update | not measured: {CHROMIUM} missing "
            "(run `.ci/install-system-deps`) | | |"
        )
    else:
        lines += [
            f"| dashboard first render of {args.lanes} lanes | {page['first']:.1f} ms | | |",
            f"| dashboard update, render only (median of 30; max) | {page['render']:.1f} ms; "
            f"{page['renderMax']:.1f} ms | | |",
            f"| dashboard poll: fetch + parse + render (median of 30) | {page['poll']:.1f} ms "
            "| < 1000 ms poll period | "
            f"{ratio(page['poll'], 1000)} |",
        ]
    lines += [
        f"| console monitor CPU, idle refresh every 1 s in a pty ({args.cpu_seconds:.0f} s) "
        f"| {cpu:.2f} % of one core | < {CPU_TARGET_PCT:.0f} % | {ratio(cpu, CPU_TARGET_PCT)} |",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    for what, figure in (("tracker unchanged", steady), ("tracker replaced each time", changing)):
        p99 = figure["p99"]
        emit("monitor.py", f"`/api/status` p99, {args.lanes} lanes, {what}", f"{p99:.1f} ms",
             f"p50 {figure['p50']:.1f} ms", p99 / P99_TARGET_MS, f"< {P99_TARGET_MS:.0f} ms",
             p99 < P99_TARGET_MS)  # fmt: skip
    emit("monitor.py", "console monitor CPU, idle", f"{cpu:.2f} % of a core", "",
         cpu / CPU_TARGET_PCT, f"< {CPU_TARGET_PCT:.0f} %", cpu < CPU_TARGET_PCT)  # fmt: skip
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")
    print(
        json.dumps({"steady": steady, "changing": changing, "dashboard": page, "cpu": cpu}),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
