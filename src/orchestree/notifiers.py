"""Where notifications go (`[notify]`): a program, a webhook, the desktop.

Each notifier takes one event as JSON bytes and raises `NotifyError` when it could not
deliver it. The `Dispatcher` sends from one daemon thread fed by a bounded queue, so a
notifier that hangs, fails or cannot be reached never slows or stops the run: putting
an event never waits, and closing waits at most a second for what is in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from orchestree import procs
from orchestree.config import NotifyConfig

QUEUE_SIZE = 256
TRIES = 3  # a webhook gets this many tries, BACKOFF_S, then twice that, between them
BACKOFF_S = 0.5
CLOSE_WAIT_S = 1.0
SECRET_HEADER = "X-Orchestree-Secret"


class NotifyError(Exception):
    """A notifier could not deliver an event; the message says why."""


class TryAgain(NotifyError):
    """A failure another try may not have (a server error, no answer): retried."""


Send = Callable[[bytes], None]


def run_command(argv: list[str], body: bytes, timeout: float) -> None:
    """Run `argv` with `body` on its stdin, in a session of its own, ended (with its
    whole tree) after `timeout` seconds."""
    token = secrets.token_hex(8)
    env = {**os.environ, procs.TREE_ENV: token}
    try:
        proc = procs.spawn(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)  # fmt: skip
    except OSError as exc:
        raise NotifyError(f"cannot run {argv[0]!r} ({exc.strerror or exc})") from None
    tree = procs.Tree(pgid=proc.pid, root=proc.pid, token=token)
    try:
        _, err = proc.communicate(body, timeout=timeout)
    except subprocess.TimeoutExpired:
        procs.end_tree(tree, 0.0, reap=proc.poll)
        proc.communicate()
        raise NotifyError(f"{argv[0]!r} did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        said = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise NotifyError(f"{argv[0]!r} exited {proc.returncode}: {said[0][:200]}".rstrip(": "))


def command_notifier(config: NotifyConfig) -> Send:
    argv = ["sh", "-c", config.command] if config.shell else shlex.split(config.command)
    return lambda body: run_command(argv, body, config.timeout_s)


def webhook_notifier(config: NotifyConfig) -> Send:
    def send(body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "orchestree"}
        if config.webhook_secret_env:
            secret = os.environ.get(config.webhook_secret_env)
            if not secret:
                raise NotifyError(
                    f"[notify] webhook_secret_env names {config.webhook_secret_env}, "
                    "which is not set; nothing was sent"
                )
            headers[SECRET_HEADER] = secret
        post(config.webhook, body, headers, config.timeout_s)

    return send


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    """POST `body` once; TryAgain on a server error or no answer."""
    import urllib.error  # here: its import (http, ssl, email) is every run's cost else
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        problem = f"{url} answered {exc.code} {exc.reason}"
        if exc.code < 500:  # the request is wrong: another try would say the same
            raise NotifyError(problem) from None
        raise TryAgain(problem) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise TryAgain(f"{url} unreachable ({reason})") from None


def desktop_notifier(config: NotifyConfig) -> Send:
    program = shutil.which("notify-send")

    def send(body: bytes) -> None:
        if program is None:
            raise NotifyError("notify-send is not installed (package libnotify-bin)")
        event = json.loads(body)
        title = f"orchestree: {event['event'].replace('_', ' ')}"
        run_command([program, "--app-name=orchestree", title, str(event["message"])], b"",
                    config.timeout_s)  # fmt: skip

    return send


def notifiers(config: NotifyConfig) -> dict[str, Send]:
    """The configured notifiers by name (`command`, `webhook`, `desktop`)."""
    found: dict[str, Send] = {}
    if config.command.strip():
        found["command"] = command_notifier(config)
    if config.webhook:
        found["webhook"] = webhook_notifier(config)
    if config.desktop:
        found["desktop"] = desktop_notifier(config)
    return found


class Dispatcher:
    """Sends events, one daemon thread and bounded queue per notifier (a webhook that
    hangs does not hold back the command); records each notifier's first failure."""

    def __init__(self, sends: dict[str, Send]) -> None:
        self._lock = threading.Lock()
        self._errors: dict[str, str] = {}  # notifier -> its first failure
        self._tried: dict[str, str] = {}  # notifier -> its last failed try (retried)
        self._queues: dict[str, queue.Queue[bytes | None]] = {}
        self._threads: list[threading.Thread] = []
        for name, send in sends.items():
            self._queues[name] = queue.Queue(QUEUE_SIZE)
            thread = threading.Thread(
                target=self._run, args=(name, send), name=f"orchestree-notify-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def put(self, event: dict[str, Any]) -> None:
        """Queue `event` for every notifier; never waits (a full queue drops it, and
        says so once)."""
        body = json.dumps(event, ensure_ascii=False).encode("utf-8")
        for name, waiting in self._queues.items():
            try:
                waiting.put_nowait(body)
            except queue.Full:
                self._fail(name, f"more than {QUEUE_SIZE} events waiting; some were dropped")

    def errors(self) -> dict[str, str]:
        with self._lock:
            return dict(self._errors)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Let the threads finish what is queued, waiting at most `wait_s` in all."""
        for waiting in self._queues.values():
            with contextlib.suppress(queue.Full):
                waiting.put_nowait(None)
        deadline = time.monotonic() + wait_s
        for name, thread in zip(self._queues, self._threads, strict=True):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # it hangs: the process ends without it
                with self._lock:
                    last = f" (so far: {self._tried[name]})" if name in self._tried else ""
                self._fail(name, f"still sending {wait_s:g} s after the run ended{last}; given up")

    def _fail(self, name: str, why: str) -> None:
        with self._lock:
            self._errors.setdefault(name, why)

    def _run(self, name: str, send: Send) -> None:
        waiting = self._queues[name]
        while (body := waiting.get()) is not None:
            try:
                self._send(name, send, body)
            except NotifyError as exc:
                self._fail(name, str(exc))
            except Exception as exc:  # a notifier must never end its thread
                self._fail(name, repr(exc))

    def _send(self, name: str, send: Send, body: bytes) -> None:
        """One event, tried up to TRIES times with backoff while the failure may pass."""
        for attempt in range(1, TRIES + 1):
            try:
                send(body)
                return
            except TryAgain as exc:
                if attempt == TRIES:
                    raise NotifyError(f"{exc}, {TRIES} tries") from None
                with self._lock:
                    self._tried[name] = str(exc)
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
