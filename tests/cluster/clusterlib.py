"""Helpers for multi-process cluster tests: a loopback coord cluster, gRPC calls, a peer proxy.

:class:`Cluster` starts N ``coord-server`` processes (short heartbeat/election timeouts) whose
peer URLs point at a :class:`PeerProxy`, a protocol-aware TCP relay the test controls: it reads
each peer connection's HELLO frame (the server's own ``frames.Hello``: sender and receiver
member IDs) and can cut every
connection to or from an isolated member -- a network partition without root privileges.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from grpclib.client import Channel
from support import (
    FAST_RAFT,
    CoordProc,
    EtcdProc,
    Proc,
    close_channel,
    close_writers,
    free_port,
    grpc_status_ok,
    listen_socket,
    lost_port_race,
    port_open,
    require_binary,
    stop_loop,
    wait_for,
)
from unwrap import unwrap

from coord._pb import etcdserverpb as pb
from coord.server.transport.frames import Hello

TOKEN = "coord-test-cluster"

T = TypeVar("T")


# -- gRPC helpers -----------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


async def _call(endpoint: str, fn: Callable[[Channel], Awaitable[T]], timeout: float) -> T:
    host, port = endpoint.split(":")
    ch = Channel(host, int(port))
    try:
        return await asyncio.wait_for(fn(ch), timeout)
    finally:
        await close_channel(ch)


def status(endpoint: str, timeout: float = 2.0) -> pb.StatusResponse | None:
    """Maintenance.Status, or None when the member does not answer."""
    try:
        return run(
            _call(endpoint, lambda ch: pb.MaintenanceStub(ch).status(pb.StatusRequest()), timeout)
        )
    except Exception:
        return None


def put(endpoint: str, key: str, value: str, timeout: float = 5.0) -> int:
    """Put; returns the revision."""
    resp = run(
        _call(
            endpoint,
            lambda ch: pb.KvStub(ch).put(pb.PutRequest(key=key.encode(), value=value.encode())),
            timeout,
        )
    )
    return int(unwrap(resp.header).revision)


def get(endpoint: str, key: str, serializable: bool = False, timeout: float = 5.0) -> str | None:
    """Get one key's value (None when absent)."""
    resp = run(
        _call(
            endpoint,
            lambda ch: pb.KvStub(ch).range(
                pb.RangeRequest(key=key.encode(), serializable=serializable)
            ),
            timeout,
        )
    )
    return resp.kvs[0].value.decode() if resp.kvs else None


def get_prefix(
    endpoint: str, prefix: str, serializable: bool = False, timeout: float = 10.0
) -> dict[str, str]:
    """All keys under ``prefix``."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    resp = run(
        _call(
            endpoint,
            lambda ch: pb.KvStub(ch).range(
                pb.RangeRequest(
                    key=prefix.encode(), range_end=end.encode(), serializable=serializable
                )
            ),
            timeout,
        )
    )
    return {kv.key.decode(): kv.value.decode() for kv in resp.kvs}


def hash_kv(endpoint: str, revision: int) -> tuple[int, int]:
    """(hash, header revision) of the store at ``revision``."""
    resp = run(
        _call(
            endpoint,
            lambda ch: pb.MaintenanceStub(ch).hash_kv(pb.HashKvRequest(revision=revision)),
            5.0,
        )
    )
    return int(resp.hash), int(unwrap(resp.header).revision)


async def write_load(
    endpoints: Sequence[str],
    prefix: str,
    n_per_endpoint: int,
    concurrency: int = 4,
    timeout: float = 3.0,
    stop: Callable[[], bool] = lambda: False,
) -> dict[str, str]:
    """Put distinct keys through every endpoint concurrently; return the acknowledged ones."""
    acked: dict[str, str] = {}

    async def worker(ep: str, w: int) -> None:
        host, port = ep.split(":")
        ch = Channel(host, int(port))
        stub = pb.KvStub(ch)
        try:
            for i in range(w, n_per_endpoint, concurrency):
                if stop():
                    return
                key, value = f"{prefix}{port}-{i:05d}", f"v{i}"
                try:
                    await asyncio.wait_for(
                        stub.put(pb.PutRequest(key=key.encode(), value=value.encode())), timeout
                    )
                    acked[key] = value
                except Exception:
                    await asyncio.sleep(0.02)
        finally:
            await close_channel(ch)

    await asyncio.gather(*(worker(ep, w) for ep in endpoints for w in range(concurrency)))
    return acked


# -- peer proxy -------------------------------------------------------------------------------


class PeerProxy:
    """Relays peer traffic ``listen port -> target port`` for several members; can isolate.

    Runs its own asyncio loop in a daemon thread.
    """

    def __init__(self) -> None:
        self.isolated: set[int] = set()
        self._conns: list[tuple[int, int, asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.base_events.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def add(self, target_port: int) -> int:
        """Relay a new port on 127.0.0.1 (bound here, returned) to ``127.0.0.1:target_port``."""

        async def start() -> int:
            srv = await asyncio.start_server(
                lambda r, w: self._relay(r, w, target_port), "127.0.0.1", 0
            )
            self._servers.append(srv)
            return int(srv.sockets[0].getsockname()[1])

        return asyncio.run_coroutine_threadsafe(start(), self._loop).result(5)

    def isolate(self, member_id: int) -> None:
        """Cut every peer connection to or from ``member_id`` (now and until healed)."""

        def do() -> None:
            self.isolated.add(member_id)
            for frm, to, w1, w2 in list(self._conns):
                if frm in self.isolated or to in self.isolated:
                    w1.close()
                    w2.close()

        self._loop.call_soon_threadsafe(do)

    def heal(self) -> None:
        """Let all traffic through again."""
        self._loop.call_soon_threadsafe(self.isolated.clear)

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: int
    ) -> None:
        try:
            head = await reader.readexactly(5)
            length, _ftype = struct.unpack(">IB", head)
            payload = await reader.readexactly(length)
            hello = msgspec.msgpack.decode(payload, type=Hello)
        except (asyncio.IncompleteReadError, msgspec.DecodeError, ConnectionError):
            writer.close()
            return
        if hello.from_id in self.isolated or hello.to_id in self.isolated:
            writer.close()
            return
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        uw.write(head + payload)
        entry = (hello.from_id, hello.to_id, writer, uw)
        self._conns.append(entry)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))
        self._conns.remove(entry)

    def close(self) -> None:
        """Stop relaying."""

        async def stop() -> None:
            for s in self._servers:
                s.close()
            await close_writers(w for _f, _t, w1, w2 in self._conns for w in (w1, w2))

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        stop_loop(self._loop, self._thread)


# -- cluster ----------------------------------------------------------------------------------


class Member:
    """One member's fixed addresses and its current process (None while down).

    Its client and peer sockets are bound here, so no other test can take the ports; the
    first start passes them to the process (socket activation), and a restart binds the same
    ports again and passes those."""

    def __init__(self, name: str, base: Path, peer_scheme: str = "http") -> None:
        self.name = name
        self.base = base
        self.peer_scheme = peer_scheme
        self._sockets = [listen_socket(), listen_socket()]
        self.client_port = int(self._sockets[0].getsockname()[1])
        self.peer_port = int(self._sockets[1].getsockname()[1])  # what the member listens on
        self.proxy_port = self.peer_port  # what it advertises (unless a PeerProxy relays it)
        self.failpoint_port = 0  # its failpoint HTTP interface (server/failpoints.py), per start
        self.proc: CoordProc | None = None
        self.id = 0

    def take_sockets(self) -> list[socket.socket]:
        """The client and peer sockets for the next start (bound again after the first)."""
        if not self._sockets:
            socks: list[socket.socket] = []

            def bound() -> bool:
                try:
                    socks.append(listen_socket((self.client_port, self.peer_port)[len(socks)]))
                except OSError:
                    return False
                return len(socks) == 2

            wait_for(bound, timeout=30, what=f"{self.name}'s ports free again")
            self._sockets = socks
        taken, self._sockets = self._sockets, []
        return taken

    def close(self) -> None:
        for s in self._sockets:
            s.close()
        self._sockets = []

    def failpoint(self, name: str, term: str) -> None:
        """Arm failpoint ``name`` with ``term`` (``off`` disarms) in the running process."""
        url = f"http://127.0.0.1:{self.failpoint_port}/{name}"
        method = "DELETE" if term == "off" else "PUT"
        req = urllib.request.Request(
            url, data=None if term == "off" else term.encode(), method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=5):
                pass
        except urllib.error.HTTPError as e:
            if not (term == "off" and e.code == 404):
                raise

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.peer_scheme}://127.0.0.1:{self.proxy_port}"


class Cluster:
    """A loopback coord cluster (see the module docstring), the tests' one cluster launcher.

    ``extra`` goes to every member, ``member_args[i]`` to member ``i`` only; ``timings`` are
    the Raft flags (:data:`~support.FAST_RAFT` by default, ``()`` for coord's defaults).
    """

    def __init__(
        self,
        base: Path,
        size: int = 3,
        snapshot_count: int = 10000,
        proxy: bool = False,
        extra: Sequence[str] = (),
        peer_scheme: str = "http",
        member_args: dict[int, Sequence[str]] | None = None,
        timings: Sequence[str] = FAST_RAFT,
    ) -> None:
        self.base = base
        self.snapshot_count = snapshot_count
        self.extra = [*timings, *extra]
        self.member_args = member_args or {}
        self.proxy = PeerProxy() if proxy else None
        self.members = [Member(f"m{i + 1}", base, peer_scheme) for i in range(size)]
        for m in self.members:
            if self.proxy is not None:
                m.proxy_port = self.proxy.add(m.peer_port)
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def args(self, m: Member, state: str = "new", initial_cluster: str | None = None) -> list[str]:
        return [
            "--listen-peer-urls",
            f"{m.peer_scheme}://127.0.0.1:{m.peer_port}",
            "--initial-advertise-peer-urls",
            m.peer_url,
            "--initial-cluster",
            initial_cluster or self.initial_cluster,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            TOKEN,
            "--snapshot-count",
            str(self.snapshot_count),
            *self.extra,
            *self.member_args.get(self.members.index(m), ()),
        ]

    def start_member(
        self, m: Member, state: str = "new", initial_cluster: str | None = None, wait: bool = True
    ) -> None:
        # A fresh port each start: while the member was down, an outgoing connection may have
        # taken the old one as its source port (nothing else depends on this one).
        m.failpoint_port = free_port()
        m.proc = CoordProc(
            self.base,
            name=m.name,
            args=self.args(m, state, initial_cluster),
            client_port=m.client_port,
            wait=False,
            sockets=m.take_sockets(),
            env={"COORD_FAILPOINTS_HTTP": f"127.0.0.1:{m.failpoint_port}"},
        )
        if wait:
            self.wait_member(m)

    def wait_member(self, m: Member, timeout: float = 30.0) -> None:
        assert m.proc is not None
        m.proc.wait_ready(timeout)
        st = status(m.endpoint)
        assert st is not None
        m.id = int(unwrap(st.header).member_id)

    def start(self, wait: Sequence[int] | None = None) -> Cluster:
        """Start every member; wait for those listed in ``wait`` (default: all)."""
        try:
            for m in self.members:
                self.start_member(m, wait=False)
            for i in range(len(self.members)) if wait is None else wait:
                self.wait_member(self.members[i])
        except BaseException:
            self.stop()
            raise
        return self

    def procs(self) -> list[CoordProc]:
        """Every member's process (all started)."""
        procs = [m.proc for m in self.members]
        assert all(p is not None for p in procs), "a member is not running"
        return [p for p in procs if p is not None]

    def running(self) -> list[Member]:
        return [m for m in self.members if m.proc is not None and m.proc.alive()]

    def leader(self, among: Sequence[Member] | None = None) -> Member | None:
        """The member every running member (of ``among``) agrees leads, if any."""
        members = list(among) if among is not None else self.running()
        leads = set()
        for m in members:
            st = status(m.endpoint)
            if st is None or not st.leader:
                return None
            leads.add(int(st.leader))
        if len(leads) != 1:
            return None
        lead = leads.pop()
        return next((m for m in self.members if m.id == lead), None)

    def wait_leader(self, among: Sequence[Member] | None = None, timeout: float = 15.0) -> Member:
        found: list[Member] = []

        def have() -> bool:
            m = self.leader(among)
            if m is not None and m in (among or self.running()):
                found.append(m)
                return True
            return False

        wait_for(have, timeout=timeout, what="an agreed leader")
        return found[-1]

    def kill(self, m: Member) -> None:
        assert m.proc is not None
        m.proc.kill()
        m.proc.stop()
        m.proc = None

    def wait_converged(self, members: Sequence[Member] | None = None, timeout: float = 30.0) -> int:
        """Wait until members report the same applied index and revision; return the hash."""
        members = list(members or self.running())
        out: list[int] = []

        def same() -> bool:
            sts = [status(m.endpoint) for m in members]
            if any(s is None for s in sts):
                return False
            applied = {s.raft_applied_index for s in sts if s is not None}
            revs = {unwrap(s.header).revision for s in sts if s is not None}
            if len(applied) != 1 or len(revs) != 1:
                return False
            rev = revs.pop()
            hashes = {hash_kv(m.endpoint, rev) for m in members}
            if len(hashes) == 1:
                out.append(hashes.pop()[0])
                return True
            return False

        wait_for(same, timeout=timeout, what="members converged", interval=0.1)
        return out[-1]

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None:
                m.proc.stop()
                m.proc = None
            m.close()
        if self.proxy is not None:
            self.proxy.close()


class EtcdMember:
    """One etcd member of a :class:`ServerCluster`: its process, name and client endpoint."""

    def __init__(self, name: str, proc: Proc, client_port: int) -> None:
        self.name = name
        self.proc: Proc | None = proc
        self.client_port = client_port
        self.endpoint = f"127.0.0.1:{client_port}"


class ServerCluster:
    """A new cluster of ``size`` real members on loopback, with :data:`~support.FAST_RAFT`
    timings, so one test runs the same assertions against both servers.

    ``kind`` is "coord" (a :class:`Cluster`) or "etcd" (Debian etcd 3.4, which can neither take
    a socket nor report its port: it starts on :func:`free_port` ports and starts again on new
    ones when it lost the race for one). Stop it with :meth:`stop`.
    """

    def __init__(self, kind: str, tmp: Path, size: int = 3) -> None:
        self.kind = kind
        self.members: list[Member] | list[EtcdMember] = []
        if kind == "coord":
            self._coord: Cluster | None = Cluster(tmp, size).start()
            self.members = self._coord.members
            return
        self._coord = None
        for attempt in range(EtcdProc.ATTEMPTS):
            try:
                self._start_etcd(tmp, size)
                return
            except AssertionError:
                # (self.members is a list of one or the other: mypy wants one element type)
                members: list[Member | EtcdMember] = list(self.members)
                lost = any(m.proc is not None and lost_port_race(m.proc) for m in members)
                self.stop()
                if not lost or attempt + 1 == EtcdProc.ATTEMPTS:
                    raise
                for m in members:
                    shutil.rmtree(tmp / m.name, ignore_errors=True)
                self.members = []
            except BaseException:
                self.stop()
                raise

    def _start_etcd(self, tmp: Path, size: int) -> None:
        names = [f"m{i}" for i in range(size)]
        ports = {n: (free_port(), free_port()) for n in names}
        initial = ",".join(f"{n}=http://127.0.0.1:{ports[n][1]}" for n in names)
        members = []
        for n in names:
            client, peer = ports[n]
            argv = [
                require_binary("etcd"),
                "--log-level",
                "warn",
                "--data-dir",
                str(tmp / n),
                "--name",
                n,
                "--listen-client-urls",
                f"http://127.0.0.1:{client}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{client}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                initial,
                "--initial-cluster-state",
                "new",
                *FAST_RAFT,
            ]
            members.append(EtcdMember(n, Proc(argv, tmp / f"{n}.log"), client))
        self.members = members
        self.ready()

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def ready(self, timeout: float = 60.0) -> None:
        """Wait until every member answers Status (with a leader)."""
        for m in self.members:

            def up(m: Member | EtcdMember = m) -> bool:
                if m.proc is None or not m.proc.alive():
                    out = m.proc.output() if m.proc is not None else "not running"
                    raise AssertionError(f"{self.kind} {m.name} exited:\n{out}")
                return bool(grpc_status_ok(m.client_port))

            wait_for(up, timeout=timeout, what=f"{self.kind} member {m.name} with a leader")

    def kill(self, index: int) -> None:
        proc = self.members[index].proc
        assert proc is not None
        proc.kill()

    def restart(self, index: int) -> None:
        """Start a killed member again with its data directory and flags."""
        m = self.members[index]
        if self._coord is not None:
            assert isinstance(m, Member)
            self._coord.kill(m)
            self._coord.start_member(m)
            return
        assert m.proc is not None
        m.proc.stop()
        m.proc = Proc(m.proc.argv, m.proc.log_path)

    def stop(self) -> None:
        if self._coord is not None:
            self._coord.stop()
        for m in self.members:
            if m.proc is not None:
                m.proc.stop()


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    """Wait until nothing listens on ``port``."""
    wait_for(lambda: not port_open(port), timeout=timeout, what=f"port {port} closed")


def elapsed_since(t0: float) -> float:
    return time.monotonic() - t0


def reserve_port() -> int:
    """A free port (alias kept for readability in tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
