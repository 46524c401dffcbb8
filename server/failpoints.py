"""Failpoints: named places in the server where a test can inject a stall, a block or a crash.

Theory of operation
-------------------
Modelled on etcd's gofail. Each persistence and apply boundary calls :func:`hit` (from a worker
thread, e.g. the WAL's fsync) or ``await`` :func:`ahit` (from the event loop, e.g. apply), both
guarded by the module-level dict :data:`ACTIVE`::

    if failpoints.ACTIVE:
        failpoints.hit("walBeforeSync")

With no failpoint armed ``ACTIVE`` is empty, so a disabled failpoint costs one global lookup and
one truthiness test. Failpoints are armed only when the process is started with the environment
variable ``COORD_FAILPOINTS`` (``name=action;name=action``, armed at import) and/or
``COORD_FAILPOINTS_HTTP`` (``host:port``): the latter serves gofail's HTTP interface from a
daemon thread, so a test can re-arm, release and list failpoints at run time, even while the
event loop itself is blocked::

    PUT    /<name>   body: action     arm (or re-arm) a failpoint
    DELETE /<name>                    disarm it (a blocked caller is released)
    GET    /<name>                    its action;  GET /  every armed failpoint, one per line

Actions (gofail's terms): ``off``; ``sleep(N)`` sleeps N milliseconds; ``block`` waits until the
failpoint is disarmed or re-armed; ``crash`` kills the process at once with SIGKILL (no cleanup,
no flush: a power cut as far as this process's files are concerned); ``N*action`` does
``action`` the next N hits only, then turns itself off.

Names used by the server (see each call site): ``walBeforeWrite``, ``walBeforeSync``,
``walAfterSync``, ``raftBeforeSaveSnap``, ``raftAfterSaveSnap``, ``raftBeforeApplySnap``,
``raftAfterApplySnap``, ``raftBeforeApply``, ``applyBeforeCommand`` (inside one command's
apply, on the event loop: a sleep there is a slow apply), ``raftBeforeFollowerSend``,
``raftAfterFollowerSend``, ``bootstrapBeforeSave``, ``bootstrapBeforeRename``.
"""

from __future__ import annotations

import http.server
import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field

import anyio

__all__ = ["ACTIVE", "FailpointError", "ahit", "arm", "disarm", "hit", "serve_http"]

log = logging.getLogger(__name__)

ENV_TERMS = "COORD_FAILPOINTS"
ENV_HTTP = "COORD_FAILPOINTS_HTTP"

_TERM = re.compile(r"^(?:(\d+)\*)?(off|block|crash|sleep\((\d+)\))$")


class FailpointError(ValueError):
    """A failpoint term that cannot be parsed (the message quotes it)."""


@dataclass
class _Failpoint:
    action: str  # "block", "crash" or "sleep"
    sleep_s: float = 0.0
    count: int | None = None  # hits left; None: unlimited
    released: threading.Event = field(default_factory=threading.Event)


#: Armed failpoints by name; empty (hence falsy) unless a test armed one.
ACTIVE: dict[str, _Failpoint] = {}
_lock = threading.Lock()


def arm(name: str, term: str) -> None:
    """Arm ``name`` with ``term`` (``off`` disarms); FailpointError if ``term`` is malformed."""
    m = _TERM.match(term.strip())
    if m is None:
        raise FailpointError(
            f"failpoint {name}: bad term {term!r} "
            f"(want off, block, crash, sleep(ms), optionally N*...)"
        )
    count, action, ms = m.group(1), m.group(2), m.group(3)
    if action == "off":
        disarm(name)
        return
    fp = _Failpoint(
        "sleep" if ms is not None else action,
        sleep_s=int(ms) / 1000.0 if ms is not None else 0.0,
        count=int(count) if count is not None else None,
    )
    with _lock:
        old = ACTIVE.get(name)
        ACTIVE[name] = fp
    if old is not None:
        old.released.set()
    log.warning("failpoint %s armed: %s", name, term.strip())


def disarm(name: str) -> bool:
    """Disarm ``name`` (releasing a blocked caller); False if it was not armed."""
    with _lock:
        fp = ACTIVE.pop(name, None)
    if fp is None:
        return False
    fp.released.set()
    log.warning("failpoint %s disarmed", name)
    return True


def _take(name: str) -> _Failpoint | None:
    with _lock:
        fp = ACTIVE.get(name)
        if fp is None:
            return None
        if fp.count is not None:
            fp.count -= 1
            if fp.count <= 0:
                del ACTIVE[name]
    if fp.action == "crash":
        log.warning("failpoint %s: crashing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)
    return fp


def hit(name: str) -> None:
    """Run failpoint ``name`` in a thread that may block (a worker thread)."""
    fp = _take(name)
    if fp is None:
        return
    if fp.action == "sleep":
        time.sleep(fp.sleep_s)
    elif fp.action == "block":
        fp.released.wait()


async def ahit(name: str) -> None:
    """Run failpoint ``name`` from the event loop: only the awaiting task waits."""
    fp = _take(name)
    if fp is None:
        return
    if fp.action == "sleep":
        await anyio.sleep(fp.sleep_s)
    elif fp.action == "block":
        while not fp.released.is_set():
            await anyio.sleep(0.01)


class _Handler(http.server.BaseHTTPRequestHandler):
    def _reply(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _name(self) -> str:
        return self.path.strip("/")

    def do_GET(self) -> None:
        name = self._name()
        with _lock:
            terms = {n: _describe(fp) for n, fp in ACTIVE.items()}
        if not name:
            self._reply(200, "".join(f"{n}={t}\n" for n, t in sorted(terms.items())))
        elif name in terms:
            self._reply(200, terms[name] + "\n")
        else:
            self._reply(404, f"failpoint {name} is not armed\n")

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        try:
            arm(self._name(), body)
        except FailpointError as e:
            self._reply(400, f"{e}\n")
            return
        self._reply(204, "")

    def do_DELETE(self) -> None:
        name = self._name()
        if disarm(name):
            self._reply(204, "")
        else:
            self._reply(404, f"failpoint {name} is not armed\n")

    def log_message(self, format: str, *args: object) -> None:
        log.debug("failpoint http: " + format, *args)


def _describe(fp: _Failpoint) -> str:
    term = f"sleep({int(fp.sleep_s * 1000)})" if fp.action == "sleep" else fp.action
    return f"{fp.count}*{term}" if fp.count is not None else term


def serve_http(addr: str) -> http.server.ThreadingHTTPServer:
    """Serve the failpoint HTTP interface on ``host:port`` from a daemon thread."""
    host, _, port = addr.rpartition(":")
    server = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="failpoints-http", daemon=True).start()
    log.warning("failpoint HTTP interface on http://%s:%d/", *server.server_address[:2])
    return server


def _arm_from_env(terms: str) -> None:
    for part in terms.split(";"):
        if part.strip():
            name, sep, term = part.partition("=")
            if not sep:
                raise FailpointError(f"{ENV_TERMS}: {part!r} is not name=term")
            arm(name.strip(), term)


_arm_from_env(os.environ.get(ENV_TERMS, ""))
