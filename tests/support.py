"""Helpers shared by the tests: free ports, real server processes, etcd/etcdctl discovery.

Tests that need Debian's etcd or etcdctl call :func:`require_binary`: on a laptop without
them the test skips with a clear reason; in CI (``CI=true``) a missing binary fails the test.
Processes are started with :class:`Proc`, which logs to a file, is polled (never slept on)
until ready, and is always killed at teardown.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from grpclib.client import Channel

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Return the path of ``name``; skip the test without it (fail instead under CI=true)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not installed (Debian packages etcd-server / etcd-client)"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return path


def listen_socket(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (an ephemeral port by default), to pass to a
    coord-server child (:class:`Proc`'s ``sockets``): the port is ours from the start, so no
    other test can take it between choosing and binding."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def socket_url(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for etcd, which cannot take a
    socket or report its port: racy, so etcd starts retry on a bind failure)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(n: int) -> int:
    """A base port with ``n`` consecutive free ports (for ``coord-server cluster``'s layout),
    below Linux's ephemeral range (32768+), so the ports other tests get from bind(0) or
    outgoing connections never land in it while the cluster starts."""
    for _ in range(200):
        base = random.randrange(20000, 32000 - n, 2)
        if all(_bindable(base + i) for i in range(n)):
            return base
    raise AssertionError("no free port block")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(
    predicate: Callable[[], bool],
    timeout: float = 15.0,
    what: str = "condition",
    interval: float = 0.02,
) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


_LIVE: set[Proc] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Kill children whose test never reached its teardown (pytest interrupted or killed by
    SIGTERM, which conftest turns into a normal exit): they run in their own sessions and would
    otherwise outlive the test run."""
    for proc in list(_LIVE):
        proc.kill()


# Socket activation as systemd does it (sd_listen_fds(3)): moves the passed descriptors to
# 3, 4, ..., sets LISTEN_FDS and LISTEN_PID (its own pid, which exec keeps) and execs the
# program. argv: N, the N descriptors, then the program's argv.
_ACTIVATE = """\
import fcntl, os, sys
n = int(sys.argv[1]); fds = [int(a) for a in sys.argv[2:2 + n]]; argv = sys.argv[2 + n:]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100 + n) for fd in fds]
for fd in fds: os.close(fd)
for i, fd in enumerate(high): os.dup2(fd, 3 + i); os.close(fd)
os.environ.update(LISTEN_FDS=str(n), LISTEN_PID=str(os.getpid()))
os.execv(argv[0], argv)
"""


class Proc:
    """A child process with its output in ``log``; killed (whole group) by :meth:`stop`.

    ``sockets`` are passed to the child by socket activation (LISTEN_FDS, from descriptor 3,
    as systemd passes them; coord-server listens on them instead of binding its URLs) and
    closed here once the child has them."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        sockets: Sequence[socket.socket] = (),
    ) -> None:
        self.argv = list(argv)
        self.log_path = log
        run = self.argv
        if sockets:
            fds = [s.fileno() for s in sockets]
            run = [sys.executable, "-c", _ACTIVATE, str(len(fds)), *map(str, fds), *self.argv]
        try:
            with open(log, "ab") as out:  # the child writes to its own copy
                self.popen = subprocess.Popen(
                    run,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **(env or {})},
                    cwd=cwd,
                    start_new_session=True,
                    pass_fds=[s.fileno() for s in sockets],
                )
        finally:
            for s in sockets:
                s.close()
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (SIGKILL by default) to the process group and reap it."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=30)
        _LIVE.discard(self)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        _LIVE.discard(self)
        return self.popen.returncode


def http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except OSError:
        return 0, b""


async def close_channel(ch: Channel) -> None:
    """Close a grpclib channel and wait (a second at most, then abort) until its socket is
    closed: a loop that ends right after (``asyncio.run``) would otherwise leave it open."""
    from coord import _grpclib_compat as compat

    proto = compat.channel_protocol(ch)
    transport = compat.protocol_transport(proto) if proto and compat.protocol_open(proto) else None
    ch.close()
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    deadline = time.monotonic() + 1.0
    while sock is not None and sock.fileno() != -1:
        if time.monotonic() > deadline:
            transport.abort()
            await asyncio.sleep(0)  # the abort closes the socket on the next iteration
            return
        await asyncio.sleep(0.005)  # the close is done by the loop (its next iterations)


def grpc_status_ok(port: int, host: str = "127.0.0.1") -> bool:
    """True when the server at host:port answers a Maintenance.Status call with a leader."""
    from coord._pb import etcdserverpb as pb

    async def probe() -> bool:
        channel = Channel(host, port)
        try:
            resp = await asyncio.wait_for(
                pb.MaintenanceStub(channel).status(pb.StatusRequest()), timeout=1.0
            )
            return bool(resp.leader)
        except Exception:
            return False
        finally:
            await close_channel(channel)

    return asyncio.run(probe())


class EtcdProc(Proc):
    """A single-member real etcd on loopback (Debian etcd-server).

    etcd can neither take a socket nor report the port it bound, so its ports come from
    :func:`free_port`; a start that loses the race for one (etcd exits with "address already
    in use") is retried on new ports."""

    ATTEMPTS = 3

    def __init__(self, data_dir: Path, name: str = "etcd0", extra: Sequence[str] = ()) -> None:
        for attempt in range(self.ATTEMPTS):
            self.client_port = free_port()
            self.peer_port = free_port()
            self.endpoint = f"127.0.0.1:{self.client_port}"
            argv = [
                require_binary("etcd"),
                "--name",
                name,
                "--data-dir",
                str(data_dir / name),
                "--listen-client-urls",
                f"http://127.0.0.1:{self.client_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.client_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{self.peer_port}",
                "--initial-cluster",
                f"{name}=http://127.0.0.1:{self.peer_port}",
                "--log-level",
                "warn",
                *extra,
            ]
            super().__init__(argv, data_dir / f"{name}.log")
            try:
                wait_for(lambda: self._healthy(), timeout=30, what=f"etcd on {self.endpoint}")
                return
            except AssertionError:
                if attempt + 1 == self.ATTEMPTS or not lost_port_race(self):
                    raise
                self.stop()
                shutil.rmtree(data_dir / name, ignore_errors=True)

    def _healthy(self) -> bool:
        if not self.alive():
            raise AssertionError(f"etcd exited early:\n{self.output()}")
        code, body = http_get(f"http://{self.endpoint}/health")
        return code == 200 and b'"true"' in body


def lost_port_race(proc: Proc) -> bool:
    """True when ``proc`` exited because a port it was given had been taken meanwhile."""
    return not proc.alive() and "address already in use" in proc.output()


class CoordProc(Proc):
    """A coord-server process on loopback; ``args`` are extra command-line flags.

    Without ``client_port`` it listens for clients on port 0 and :meth:`wait_ready` reads the
    port it got from ``--listen-port-file`` (with ``wait=False``, a socket bound here is
    passed instead, so the port is known at once); a lone member (no ``--listen-peer-urls``
    in ``args``) gets a peer socket bound here. ``sockets`` are passed on to the child
    (socket activation, see :class:`Proc`): a cluster's peer sockets, bound by the test.
    """

    def __init__(
        self,
        data_dir: Path,
        name: str = "default",
        args: Sequence[str] = (),
        client_port: int | None = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
        sockets: Sequence[socket.socket] = (),
    ) -> None:
        self.data_dir = data_dir / f"{name}.coord"
        self.port_file = data_dir / f"{name}.ports.json"
        self.port_file.unlink(missing_ok=True)
        passed = list(sockets)
        self.client_port = client_port or 0
        if client_port is None and not wait:
            client = listen_socket()
            passed.append(client)
            self.client_port = client.getsockname()[1]
        peer_args: list[str] = []
        if "--listen-peer-urls" not in args:
            # A lone member: its own peer socket, so parallel servers never share 2380.
            peer_sock = listen_socket()
            passed.append(peer_sock)
            peer = socket_url(peer_sock)
            peer_args = [
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"{name}={peer}",
            ]
        argv = [
            sys.executable,
            "-m",
            "coord.server",
            "--name",
            name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            f"http://127.0.0.1:{self.client_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{self.client_port}",
            "--listen-port-file",
            str(self.port_file),
            *peer_args,
            *args,
        ]
        super().__init__(argv, data_dir / f"{name}.log", env=env, sockets=passed)
        if wait:
            self.wait_ready()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"coord-server exited early:\n{self.output()}")
            if not self.client_port:
                if not self.port_file.exists():
                    return False
                url = json.loads(self.port_file.read_text())["client"][0]
                self.client_port = int(url.rsplit(":", 1)[1])
            return port_open(self.client_port) and grpc_status_ok(self.client_port)

        wait_for(ready, timeout=timeout, what=f"coord-server on {self.endpoint}")


def etcdctl(
    endpoint: str,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run Debian's etcdctl (API v3) against ``endpoint``."""
    exe = require_binary("etcdctl")
    env = {**os.environ, "ETCDCTL_API": "3", **(extra_env or {})}
    proc = subprocess.run(
        [exe, f"--endpoints={endpoint}", *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"etcdctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


# ---- HTTP/JSON gateway helpers (tests/http, tests/tls) ----


def json_b64(s: str | bytes) -> str:
    """etcd's JSON bytes encoding."""
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def json_unb64(s: str) -> bytes:
    return base64.b64decode(s)


def http_post(
    endpoint: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    timeout: float = 10.0,
) -> tuple[int, Any, dict[str, str]]:
    """POST JSON (or ``raw`` bytes) to ``http://endpoint/path``: (status, decoded body, headers)."""
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        payload = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        try:
            decoded: Any = json.loads(payload) if payload else None
        except ValueError:
            decoded = payload.decode(errors="replace")
        return resp.status, decoded, hdrs
    finally:
        conn.close()


def http_ok(endpoint: str, path: str, body: Any = None) -> Any:
    """POST and assert 200; return the decoded JSON."""
    status, data, _ = http_post(endpoint, path, body)
    assert status == 200, (status, data)
    return data


class CurlStream:
    """``curl -N`` on a streaming endpoint; :meth:`next_json` reads one JSON line (deadline)."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            ["curl", "-sS", "-N", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
        self._buf = b""

    def next_json(self, timeout: float = 10.0) -> Any:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line from curl within {timeout}s; got {self._buf!r}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    err = self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"curl ended: {self._buf!r} {err!r}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


#: Raft timings that make elections and leader loss take well under a second or two.
HEARTBEAT_MS = 50
ELECTION_MS = 500
FAST_RAFT = ["--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS)]


async def close_writers(writers: Iterable[asyncio.StreamWriter]) -> None:
    """Close the connections and wait until their sockets are closed."""
    writers = list(writers)
    for w in writers:
        w.close()
    for w in writers:
        with contextlib.suppress(OSError):
            await w.wait_closed()


def stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop ``loop`` (run forever by ``thread``), wait for the thread, close the loop."""
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


class Relay:
    """Relays TCP connections to ``upstream``; :meth:`drop` closes every open one."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.accepted = 0
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._on_loop(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _relay(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.accepted += 1
        ur, uw = await asyncio.open_connection(*self.upstream)
        self._open |= {cw, uw}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                w.write(data)
            w.close()

        try:
            await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
        except OSError:
            pass
        finally:
            self._open -= {cw, uw}
            cw.close()
            uw.close()

    @property
    def open_connections(self) -> int:
        return len(self._open) // 2

    def drop(self) -> None:
        """Close every relayed connection, as a restarting server would."""

        async def do() -> None:
            for w in list(self._open):
                w.close()

        self._on_loop(do())

    def close(self) -> None:
        async def do() -> None:
            self._server.close()
            await close_writers(self._open)

        self._on_loop(do())
        stop_loop(self._loop, self._thread)
        self._thread.join(10)
        self._loop.close()


@dataclass(frozen=True)
class Pki:
    """Paths of one CA's files: the CA, a server cert (127.0.0.1/localhost) and a client cert."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_flags(self, prefix: str = "") -> list[str]:
        """``--cert-file/--key-file/--trusted-ca-file`` (``prefix`` = "peer-" for peers)."""
        return [
            f"--{prefix}cert-file",
            str(self.server_cert),
            f"--{prefix}key-file",
            str(self.server_key),
            f"--{prefix}trusted-ca-file",
            str(self.ca),
        ]


def make_pki(directory: Path, name: str) -> Pki:
    """A fresh CA with one server and one client certificate, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    import trustme  # test-only dependency, imported where certificates are made

    ca = trustme.CA(organization_name=f"coord test {name}")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client.coord.test", common_name="client")
    pki = Pki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(pki.ca))
    server.cert_chain_pems[0].write_to_path(str(pki.server_cert))
    server.private_key_pem.write_to_path(str(pki.server_key))
    client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
    client.private_key_pem.write_to_path(str(pki.client_key))
    return pki


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape_metrics(endpoint: str) -> tuple[dict[str, str], dict[str, float]]:
    """``(name -> type, "name{labels}" -> value)`` of one scrape; labels sorted by name (Go's
    client sorts them, prometheus-client keeps their declared order)."""
    status, body = http_get(f"http://{endpoint}/metrics", timeout=5)
    assert status == 200, body
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m is not None, f"not a sample line: {line!r}"
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(_LABEL.findall(m.group(2) or "")))
            samples[m.group(1) + (f"{{{labels}}}" if labels else "")] = float(m.group(3))
    return types, samples


# ---- auth (tests/server/test_auth_*.py, tests/cluster/test_auth_cluster.py) ----


def enable_auth(endpoint: str, *flags: str) -> None:
    """Enable auth with etcdctl (``flags``: e.g. TLS options): user root (password rootpw)
    holding role root, and app (apppw) whose role app-rw holds read-write on /app/ only."""
    for args in (
        ("user", "add", "root:rootpw"),
        ("user", "grant-role", "root", "root"),
        ("user", "add", "app:apppw"),
        ("role", "add", "app-rw"),
        ("role", "grant-permission", "app-rw", "readwrite", "/app/", "--prefix=true"),
        ("user", "grant-role", "app", "app-rw"),
        ("auth", "enable"),
    ):
        etcdctl(endpoint, *flags, *args)


def jwt_keys(directory: Path) -> tuple[Path, Path]:
    """An ES256 key pair for ``--auth-token jwt,...``: (private key file, public key file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = directory / "jwt.key", directory / "jwt.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub
