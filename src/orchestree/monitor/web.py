"""The web monitor: a read-only Starlette app served by uvicorn (DESIGN.md §9).

Safety, since any web page the user visits can make their browser talk to localhost:
- a guard in front of every route refuses Host headers other than the bound address
  or localhost (so a DNS-rebinding page cannot read the tracker) and every method but
  GET and HEAD (nothing here changes anything);
- the log endpoint serves only `.orchestration/logs/agent-<id>.log` of a lane the
  tracker knows, by a path built from a validated id, never from tracker data (agents
  write the tracker), capped in size, without following symlinks;
- the diff endpoint (`/api/lanes/<id>/diff`) takes a validated id of a lane the
  tracker knows and only reads git (`lanediff`): a running lane's worktree, index and
  branch are never touched, and the patch is capped at 2 MB;
- the page renders tracker strings with textContent only, and the Content-Security-
  Policy forbids inline script, so even a slip there would run nothing.

`/api/status` is the tracker, its snapshot, and each lane's attempts for the timeline
(`attempts.py`, which follows events.jsonl: the tracker keeps only the current attempt).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestree import lanediff
from orchestree.errors import EnvironmentRefused, GitError, UserError
from orchestree.layout import Layout
from orchestree.models import Tracker, check_lane_id
from orchestree.monitor.attempts import EventsReader, timeline
from orchestree.monitor.snapshot import Memo
from orchestree.monitor.source import TrackerReader, snapshot_now
from orchestree.monitor.views import to_json_dict

STATIC = Path(__file__).parent / "static"
LOG_TAIL_DEFAULT = 16 * 1024
LOG_TAIL_MAX = 256 * 1024
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str) -> frozenset[str]:
    """Host names a request may carry: loopback names and the address we listen on.
    Bound to all interfaces, the machine's own names and addresses count too."""
    names = set(LOOPBACK_NAMES) | {bound.lower()}
    if bound in ("0.0.0.0", "::"):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        for addrs in psutil.net_if_addrs().values():
            names |= {
                a.address.split("%")[0].lower()
                for a in addrs
                if a.family in (socket.AF_INET, socket.AF_INET6)
            }
    return frozenset(names)


def split_host(value: str) -> tuple[str, int | None] | None:
    """`name[:port]` or `[v6][:port]` → (name, port); None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[1:end], value[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    else:
        name, _, port = value.partition(":")
        port = port if _ else None
    if not name or (port is not None and not port.isdigit()):
        return None
    return name, int(port) if port is not None else None


class Guard:
    """ASGI middleware: Host and method checks first, security headers on every answer."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], port: int) -> None:
        self.app, self.hosts, self.port = app, hosts, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = split_host(headers.get(b"host", b"").decode("latin-1"))
        if host is None or host[0] not in self.hosts or host[1] not in (None, self.port):
            reply = Response("host not allowed: open the monitor at its own address\n", 421)
            await reply(scope, receive, self._secured(send))
            return
        if scope["method"] not in ("GET", "HEAD"):
            reply = Response("the monitor is read-only\n", 405, {"Allow": "GET, HEAD"})
            await reply(scope, receive, self._secured(send))
            return
        await self.app(scope, receive, self._secured(send))

    @staticmethod
    def _secured(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        return wrapped


def read_tail(path: Path, limit: int) -> tuple[bytes, int]:
    """The last `limit` bytes of a regular file and its size; refuses symlinks."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        start = max(0, st.st_size - limit)
        return os.pread(fd, st.st_size - start, start), st.st_size
    finally:
        os.close(fd)


def _encode(value: Any) -> bytes:
    # Compact: the dashboard fetches this every second, 500 lanes and all.
    return json.dumps(value, separators=(",", ":"), default=str).encode()


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _encode(content)


def make_app(
    root: Path,
    *,
    host: str,
    port: int,
    default_timeout_s: float,
    worktree_root: str = ".worktrees",
) -> ASGIApp:
    """The monitor's ASGI app for the repository at `root`, bound to `host:port`
    (`worktree_root`: `[worktree] root`, where the diff endpoint finds running work)."""
    layout = Layout(root, worktree_root)
    reader = TrackerReader(layout.tracker)
    events = EventsReader(layout.events)  # each lane's attempts, for the timeline

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # browsers ask; a 404 would fill the console

    memo = Memo()

    async def status(request: Request) -> Response:
        reading = reader.read()
        notice = _encode(reading.notice)
        if reading.tracker is None or reading.raw is None:
            body = b'{"tracker":null,"snapshot":null,"notice":' + notice + b"}"
            return Response(body, 503, media_type="application/json")
        snap = _encode(to_json_dict(snapshot_now(reading.tracker, default_timeout_s, memo)))
        # The tracker goes out as the very bytes read (they parsed, so they are JSON):
        # no second encoding of 500 lanes per request.
        body = b'{"tracker":' + reading.raw + b',"snapshot":' + snap
        body += b',"timeline":' + _encode(
            timeline(reading.tracker, events.read(), datetime.now(UTC))
        )
        return Response(body + b',"notice":' + notice + b"}", media_type="application/json")

    def refused(lane_id: str, tracker: dict[str, Any] | None) -> Response | None:
        """Why a lane's route answers no: an id that is no lane id, or no such lane."""
        try:
            check_lane_id(lane_id)
        except UserError as exc:
            return _Json({"error": str(exc)}, status_code=400)
        if lane_id not in ((tracker or {}).get("lanes") or {}):
            return _Json({"error": f"no lane {lane_id!r} in the tracker"}, status_code=404)
        return None

    async def log(request: Request) -> Response:
        lane_id = request.path_params["lane_id"]
        no = refused(lane_id, reader.read().tracker)
        if no is not None:
            return no
        try:
            limit = min(int(request.query_params.get("bytes", LOG_TAIL_DEFAULT)), LOG_TAIL_MAX)
        except ValueError:
            return _Json({"error": "bytes must be a whole number"}, status_code=400)
        path = layout.log(lane_id)
        try:
            data, size = read_tail(path, max(limit, 0))
        except FileNotFoundError:
            return _Json({"error": f"lane {lane_id} has no log yet"}, status_code=404)
        except OSError as exc:
            return _Json({"error": f"cannot read the log: {exc.strerror}"}, status_code=403)
        text = data.decode("utf-8", errors="replace")
        body = {"lane": lane_id, "log": layout.rel(path), "size": size, "text": text}
        return _Json({**body, "truncated": size > len(data)})

    async def diff(request: Request) -> Response:
        lane_id = request.path_params["lane_id"]
        data = reader.read().tracker
        no = refused(lane_id, data)
        if no is not None:
            return no
        try:
            tracker = Tracker.model_validate(data)
            # git reads the lane's files: off the event loop, so /api/status never waits
            found = await run_in_threadpool(lanediff.lane_diff, layout, tracker, lane_id)
        except UserError as exc:  # no commit yet
            return _Json({"error": str(exc)}, status_code=404)
        except (GitError, ValueError) as exc:
            said = " ".join(str(exc).split())[:300]
            return _Json({"error": f"cannot read lane {lane_id}'s diff: {said}"}, status_code=503)
        return _Json(found.as_json())

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/favicon.ico", no_icon),
            Route("/api/status", status),
            Route("/api/log/{lane_id:path}", log),
            Route("/api/lanes/{lane_id:path}/diff", diff),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
    )
    return Guard(app, allowed_hosts(host), port)


def open_socket(host: str, port: int) -> socket.socket:
    """Bind now, so a port in use is one clear line and not a uvicorn traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise EnvironmentRefused(
                f"port {port} on {host} is in use; stop the program using it "
                "or pick another port with --port"
            ) from None
        raise EnvironmentRefused(
            f"cannot listen on {host}:{port} ({exc.strerror}); check --host/--port"
        ) from None
    return sock


def make_server(app: ASGIApp) -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    return uvicorn.Server(config)
