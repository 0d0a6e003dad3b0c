"""A real uvicorn server running the monitor app on a free loopback port, in a thread
of the test process, plus a raw HTTP client that sends exactly the headers we say."""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from orchestree.monitor.web import make_app, make_server, open_socket


@contextlib.contextmanager
def serve(repo: Path, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve the monitor for `repo`; yields the port the kernel chose."""
    sock = open_socket(host, 0)
    port = sock.getsockname()[1]
    server = make_server(make_app(repo, host=host, port=port, default_timeout_s=3600))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the monitor server did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def request(
    port: int,
    path: str = "/api/status",
    method: str = "GET",
    host: str | None = "",
    body: bytes | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request to 127.0.0.1:`port`. `host`: "" sends our own address, None no
    Host header at all, anything else that exact header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host or f"127.0.0.1:{port}")
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()
