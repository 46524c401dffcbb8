"""Benchmark: coord next to etcd on this machine, the same load for both, in interleaved rounds.

For each size in ``--members`` (1 and 3) a coord cluster and an etcd cluster of that size run on
loopback, one after the other, alternating which goes first (round 1 coord then etcd, round 2
etcd then coord, ...), each started fresh, with default timing (heartbeat 100 ms, election
1000 ms) and fsync'ed storage. The load generator is grpcio (its HTTP/2 is C core, a bench-only
dependency; its own CPU per request is measured and printed: ~50-70 µs per call), or with
``--load raw`` this script's own HTTP/2 client (:class:`UnaryConn`, ~5-15 µs per call), in
``--procs`` processes: ``--clients`` concurrent sequential clients spread round-robin over the
members (as etcd's clientv3 balancer does), ``--seconds`` per point, after 1,000 keys were
written. Workloads (``--ops``): ``put`` (a ``--value-size`` value to one of the 1,000 keys),
``range`` (a linearizable get of one key) and ``srange`` (the same with
``serializable=true``). Per point: ops/s, p50 and p99 latency, and the µs of server CPU per op
(utime + stime from /proc/PID/stat of every process of that system's servers over the point,
divided by the ops).

The other parts (``--parts``), on single members: ``txn``: 100,000 keys written into a fresh
member as Txns of 128 Puts by 8 concurrent senders: the time, then the server's RSS (VmRSS)
with those keys; ``watch``: 1,000 watchers of one key on 4 connections (read by a raw HTTP/2
receiver that costs a few µs per event, so the servers are what is measured) while a writer
puts 200 values one after the other: events/s delivered and event latency.

Every ratio is the median of the per-round coord/etcd ratios over ``--rounds`` rounds (3 or
more for numbers worth recording).

Usage::

    python scripts/bench_cluster.py [--members 1,3] [--seconds 5] [--rounds 3] [--write-doc]
    python scripts/bench_cluster.py --quick                # a short smoke run of everything
    python scripts/bench_cluster.py --members 3 --ops put --parts kv   # the cluster Put only
    python scripts/bench_cluster.py --metrics-cost 3 --clients 64 [--write-doc]
    python scripts/bench_cluster.py --auth-cost 3 --clients 64 [--write-doc]
    python scripts/bench_cluster.py --raft-only

``--write-doc`` replaces this script's marked section of docs/performance.md (the rest of the
file belongs to others and is left untouched; the section of the retired bench_kv.py goes).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import multiprocessing
import os
import platform
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.encoding.base import CodecBase

from coord._pb import etcdserverpb as pb

SECTION = "## coord vs etcd: throughput, latency, CPU per op, memory, watch fan-out"
PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
TXN = "/etcdserverpb.KV/Txn"
WATCH = "/etcdserverpb.Watch/Watch"
STATUS = "/etcdserverpb.Maintenance/Status"
KINDS = ("coord", "etcd")
OPS = {"put": "Put", "range": "linearizable Range", "srange": "serializable Range"}
PARTS = ("kv", "txn", "watch")
#: the unary load generators (--load)
LOADS = {
    "grpcio": "grpcio (C core HTTP/2, bytes in and out)",
    "raw": "raw HTTP/2 (this script's UnaryConn: no gRPC library, replies not decoded)",
}
#: the keys the KV points use (written before each system's points)
KEYS = [f"/bench/key-{i:06d}".encode() for i in range(1000)]
WATCH_KEY = b"/bench/watched"
#: grpcio channel options for the load generator: no retry bookkeeping per call, and every
#: channel its own TCP connection (grpcio otherwise shares one between equal channels)
GRPC_OPTIONS = [("grpc.enable_retries", 0), ("grpc.use_local_subchannel_pool", 1)]


class RawCodec(CodecBase):
    """Pass bytes through untouched."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return bytes(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(
    kind: str, root: Path, extra: list[str] | None = None, size: int = 3
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """Start ``size`` members of ``kind`` ("coord" or "etcd", with ``extra`` flags); return
    processes and endpoints. Each member is the leader of its own session (so
    :func:`system_pids` finds any processes it starts)."""
    names = [f"b{i + 1}" for i in range(size)]
    cports = {n: free_port() for n in names}
    pports = {n: free_port() for n in names}
    initial = ",".join(f"{n}=http://127.0.0.1:{pports[n]}" for n in names)
    procs = []
    for n in names:
        flags = [
            "--name",
            n,
            "--data-dir",
            str(root / kind / n),
            "--listen-client-urls",
            f"http://127.0.0.1:{cports[n]}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{cports[n]}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{pports[n]}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{pports[n]}",
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            f"bench-{kind}",
        ]
        if kind == "etcd":
            argv = ["/usr/bin/etcd", *flags, "--log-level", "error"]
        else:
            argv = [sys.executable, "-m", "coord.server", *flags, "--log-level", "warn"]
            argv += extra or []
        log = open(root / f"{kind}-{n}.log", "wb")  # noqa: SIM115 - lives as long as the proc
        procs.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
    return procs, [f"127.0.0.1:{cports[n]}" for n in names]


async def wait_ready(endpoints: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        leaders = set()
        for ep in endpoints:
            host, port = ep.split(":")
            ch = Channel(host, int(port), codec=RawCodec())
            try:
                data = await asyncio.wait_for(unary(ch, STATUS, bytes(pb.StatusRequest())), 1)
                leaders.add(pb.StatusResponse.parse(data).leader)
            except Exception:
                leaders.add(0)
            finally:
                ch.close()
        if len(leaders) == 1 and 0 not in leaders:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster at {endpoints} not ready")
        await asyncio.sleep(0.2)


async def unary(ch: Channel, path: str, body: bytes, token: str = "") -> bytes:
    """One unary call on a grpclib channel (the setup helpers; the load is grpcio's)."""
    md = {"token": token} if token else None
    async with ch.request(path, Cardinality.UNARY_UNARY, bytes, bytes, metadata=md) as stream:
        await stream.send_message(body, end=True)
        data = await stream.recv_message()
        if data is None:
            raise RuntimeError(f"{path}: the stream ended without a reply")
        return data


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


# ---------------------------------------------------------------- the servers' CPU and memory


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (field 3, the state, is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def system_pids(leaders: Iterable[int]) -> list[int]:
    """Every live process in the sessions of ``leaders`` (each server started its own), so
    processes a server starts count as that server's."""
    sessions = {str(p) for p in leaders}
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if _stat(int(entry.name))[3] in sessions:
                    pids.append(int(entry.name))
            except (OSError, IndexError):
                pass  # gone meanwhile
    return pids


def server_cpu(leaders: Iterable[int]) -> float:
    """Seconds of CPU (user + system, every thread) used so far by the servers' processes."""
    ticks = 0
    for pid in system_pids(leaders):
        try:
            fields = _stat(pid)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def server_rss(leaders: Iterable[int]) -> int:
    """Bytes resident (VmRSS, summed) of the servers' processes."""
    total = 0
    for pid in system_pids(leaders):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _own_cpu() -> float:
    """Seconds of CPU this process used (all its threads: grpcio's C core included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------ raw HTTP/2

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8
MAX_WINDOW = 2**31 - 1


def _frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, sid) + payload


def _grpc_headers(endpoint: str, path: str, token: str = "") -> list[tuple[str, str]]:
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", endpoint),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    return [*headers, ("token", token)] if token else headers


class UnaryConn:
    """One HTTP/2 connection on which ``slots`` sequential clients each keep one unary call
    of ``path`` in flight (``--load raw``): spoken directly on a socket, a few µs of CPU per
    call (grpcio's client costs ~50-70). The request header block is encoded once (after the
    first, every field is an index into the table the first one filled, so the same bytes do
    for every later call); replies are not decoded: a call that ends (HEADERS with
    END_STREAM) after a DATA frame succeeded, one that ends without a message failed."""

    def __init__(self, endpoint: str, path: str, bodies: list[bytes], token: str, first: int):
        import hpack

        host, port = endpoint.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        enc = hpack.Encoder()
        headers = _grpc_headers(endpoint, path, token)
        self._blocks = [enc.encode(headers), enc.encode(headers)]
        self._msgs = [b"\x00" + struct.pack(">I", len(b)) + b for b in bodies]
        self._next = first  # the next body
        self._sid = 1
        self._started: dict[int, float] = {}  # in-flight stream -> its start
        self._replied: set[int] = set()  # in-flight streams that got a message
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._send_window = 65535  # the connection's
        self._stream_window = 65535  # the server's SETTINGS_INITIAL_WINDOW_SIZE
        self._max_streams = MAX_WINDOW
        self._deferred = 0  # calls waiting for the connection window
        self._unacked = 0
        self.stop_at = 0.0  # perf_counter: a finished call is followed by another until then
        self.lat: list[float] = []
        self.errors = 0
        self.sock.sendall(
            PREFACE
            + _frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, MAX_WINDOW))
            + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535))
        )

    @property
    def in_flight(self) -> int:
        return len(self._started) + self._deferred

    def start(self, slots: int) -> None:
        if slots > self._max_streams:
            raise RuntimeError(f"the server allows {self._max_streams} streams, not {slots}")
        now = time.perf_counter()
        for _ in range(slots):
            self._call(now)
        self._flush()

    def _call(self, now: float) -> None:
        msg = self._msgs[self._next % len(self._msgs)]
        if len(msg) > self._send_window:
            self._deferred += 1
            return
        if len(msg) > self._stream_window:
            raise RuntimeError("a request larger than the server's stream window")
        self._next += 1
        sid, self._sid = self._sid, self._sid + 2
        block = self._blocks[0 if sid == 1 else 1]
        self._out.append(_frame(HEADERS, END_HEADERS, sid, block))
        self._out.append(_frame(DATA, END_STREAM, sid, msg))
        self._send_window -= len(msg)
        self._started[sid] = now

    def _flush(self) -> None:
        if self._out:
            self.sock.sendall(b"".join(self._out))
            self._out.clear()

    def on_readable(self) -> None:
        chunk = self.sock.recv(1 << 20)
        now = time.perf_counter()
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf = self._buf
        buf += chunk
        pos, end, done = 0, len(buf), 0
        while end - pos >= 9:
            size = int.from_bytes(buf[pos : pos + 3], "big")
            if end - pos < 9 + size:
                break
            kind, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            body = pos + 9
            pos = body + size
            if kind == DATA:
                self._unacked += size
                if size:
                    self._replied.add(sid)
                if not flags & END_STREAM:
                    continue
            elif kind == HEADERS:
                if not flags & END_STREAM:
                    continue
            elif kind == WINDOW_UPDATE:
                if sid == 0:
                    self._send_window += int.from_bytes(buf[body : body + 4], "big") & MAX_WINDOW
                continue
            elif kind == SETTINGS:
                if not flags & ACK:
                    for i in range(body, pos - 5, 6):
                        key, value = struct.unpack_from(">HI", buf, i)
                        if key == 0x3:
                            self._max_streams = value
                        elif key == 0x4:
                            self._stream_window = value
                    self._out.append(_frame(SETTINGS, ACK, 0))
                continue
            elif kind == PING:
                if not flags & ACK:
                    self._out.append(_frame(PING, ACK, 0, bytes(buf[body:pos])))
                continue
            elif kind in (RST_STREAM, GOAWAY):
                raise ConnectionError(
                    f"the server sent frame type {kind}: {bytes(buf[body:pos])!r}"
                )
            else:
                continue
            started = self._started.pop(sid, None)  # the call on ``sid`` is over
            if started is None:
                continue
            if sid in self._replied:
                self._replied.discard(sid)
                self.lat.append(now - started)
            else:
                self.errors += 1
            done += 1
        del buf[:pos]
        if now < self.stop_at:
            done, self._deferred = done + self._deferred, 0
            for _ in range(done):
                self._call(now)
        else:
            self._deferred = 0
        if self._unacked > 1 << 30:
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._unacked)))
            self._unacked = 0
        self._flush()

    def close(self) -> None:
        self.sock.close()


def _pump(conns: Sequence[Any], done: Callable[[], bool], timeout: float = 30) -> bool:
    """Read ``conns`` (each with ``sock`` and ``on_readable``) until ``done()``; False if
    nothing arrived for ``timeout`` s."""
    with selectors.DefaultSelector() as sel:
        for c in conns:
            sel.register(c.sock, selectors.EVENT_READ, c)
        quiet_until = time.monotonic() + timeout
        while not done():
            ready = sel.select(1.0)
            if ready:
                quiet_until = time.monotonic() + timeout
            elif time.monotonic() > quiet_until:
                return False
            for key, _ in ready:
                key.data.on_readable()
    return True


def _raw_load(
    endpoints: list[str],
    op: str,
    clients: int,
    offset: int,
    seconds: float,
    start_at: float,
    token: str,
    value_size: int,
) -> tuple[list[float], int, float, float, float]:
    """:func:`_load` with :class:`UnaryConn` instead of grpcio: one connection per endpoint,
    client ``offset + i`` on endpoint ``(offset + i) % len(endpoints)``."""
    path, bodies = _bodies(op, value_size)
    n = len(endpoints)
    conns = [
        UnaryConn(ep, path, bodies, token, 997 * (offset + i)) for i, ep in enumerate(endpoints)
    ]
    try:
        for c in conns:  # warm-up: connection, settings, first call
            c.start(1)
        if not _pump(conns, lambda: all(not c.in_flight for c in conns)):
            raise TimeoutError("no reply to the first calls")
        if any(c.errors for c in conns):
            raise RuntimeError(f"{op}: the first call failed (no message in the reply)")
        slots = [sum(1 for i in range(clients) if (offset + i) % n == k) for k in range(n)]
        time.sleep(max(0.0, start_at - time.time()))
        cpu0, t_start = _own_cpu(), time.time()
        stop_at = time.perf_counter() + seconds
        for c, k in zip(conns, slots, strict=True):
            c.lat.clear()
            c.stop_at = stop_at
            if k:
                c.start(k)
        if not _pump(conns, lambda: all(not c.in_flight for c in conns)):
            raise TimeoutError("calls without a reply for 30 s")
        lat = [x for c in conns for x in c.lat]
        return lat, sum(c.errors for c in conns), t_start, time.time(), _own_cpu() - cpu0
    finally:
        for c in conns:
            c.close()


# ------------------------------------------------------------------------ the load generator


_POOL: tuple[int, concurrent.futures.ProcessPoolExecutor] | None = None


def _warm() -> None:
    import grpc  # noqa: F401 - imported once, before any point

    time.sleep(0.3)  # hold this worker so that the next _warm goes to another one


def _pool(size: int) -> concurrent.futures.ProcessPoolExecutor:
    """The load generator's processes, started once ("spawn": no grpcio state is forked) and
    kept for every later point."""
    global _POOL
    if _POOL is not None and _POOL[0] >= size:
        return _POOL[1]
    if _POOL is not None:
        _POOL[1].shutdown()
    pool = concurrent.futures.ProcessPoolExecutor(
        size, mp_context=multiprocessing.get_context("spawn")
    )
    for f in [pool.submit(_warm) for _ in range(size)]:
        f.result()
    _POOL = (size, pool)
    return pool


@dataclass
class Point:
    """One system's result for one workload in one round."""

    ops: int
    seconds: float
    latencies: list[float]  # sorted, seconds
    errors: int = 0
    server_cpu: float = float("nan")  # seconds
    loadgen_cpu: float = float("nan")  # seconds

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("nan")

    def pct(self, q: float) -> float:
        """The ``q`` quantile of the latencies, ms."""
        lat = self.latencies
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.ops * 1e6 if self.ops else float("nan")

    @property
    def loadgen_us(self) -> float:
        return self.loadgen_cpu / self.ops * 1e6 if self.ops else float("nan")

    @property
    def cores(self) -> float:
        """CPUs the servers kept busy over the point."""
        return self.server_cpu / self.seconds if self.seconds > 0 else float("nan")


def _callers(endpoints: list[str], token: str = "") -> tuple[list[Any], Any]:
    """Per endpoint ``call(path, body) -> awaitable bytes`` (grpcio aio, bytes in and out, so
    no protobuf work per call; ``token`` sent as auth metadata if given), and a coroutine
    function closing them all."""
    import grpc

    gchans = [grpc.aio.insecure_channel(ep, options=GRPC_OPTIONS) for ep in endpoints]
    md = (("token", token),) if token else None

    def caller(ch: Any) -> Any:
        stubs = {path: ch.unary_unary(path) for path in (PUT, RANGE, TXN)}
        return lambda path, body: stubs[path](body, metadata=md)

    async def close() -> None:
        for ch in gchans:
            await ch.close()

    return [caller(ch) for ch in gchans], close


def _bodies(op: str, value_size: int) -> tuple[str, list[bytes]]:
    value = b"v" * value_size
    if op == "put":
        return PUT, [bytes(pb.PutRequest(key=k, value=value)) for k in KEYS]
    if op in ("range", "srange"):
        return RANGE, [bytes(pb.RangeRequest(key=k, serializable=op == "srange")) for k in KEYS]
    raise ValueError(f"unknown op {op!r}")


async def _load(
    endpoints: list[str],
    op: str,
    clients: int,
    offset: int,
    seconds: float,
    start_at: float,
    token: str,
    value_size: int,
) -> tuple[list[float], int, float, float, float]:
    """``clients`` sequential clients for ``seconds`` from ``start_at`` (wall clock):
    latencies, errors, start and end (wall clock), this process's CPU seconds meanwhile."""
    channels, close = _callers(endpoints, token)
    path, bodies = _bodies(op, value_size)
    lat: list[float] = []
    errors = 0
    stop_at = 0.0

    async def client(i: int) -> None:
        nonlocal errors
        i += offset
        ch = channels[i % len(channels)]
        n = i
        while time.monotonic() < stop_at:
            n += clients
            t0 = time.perf_counter()
            try:
                await ch(path, bodies[n % len(bodies)])
            except Exception:
                errors += 1
                await asyncio.sleep(0.01)  # a failing server must not make this spin
                continue
            lat.append(time.perf_counter() - t0)

    try:
        for ch in channels:  # warm-up: connections, first request
            await ch(path, bodies[0])
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0, t_start = _own_cpu(), time.time()
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(client(i) for i in range(clients)))
        return lat, errors, t_start, time.time(), _own_cpu() - cpu0
    finally:
        await close()


def _worker(
    endpoints: list[str],
    op: str,
    clients: int,
    offset: int,
    seconds: float,
    start_at: float,
    token: str,
    value_size: int,
    load: str = "grpcio",
) -> tuple[list[float], int, float, float, float]:
    """One load-generator process (see :func:`_load`)."""
    args = (endpoints, op, clients, offset, seconds, start_at, token, value_size)
    if load == "raw":
        return _raw_load(*args)
    return asyncio.run(_load(*args))


def run_point(
    endpoints: list[str],
    op: str,
    clients: int,
    seconds: float,
    procs: int = 2,
    token: str = "",
    *,
    leaders: Sequence[int] = (),
    value_size: int = 256,
    load: str = "grpcio",
) -> Point:
    """``op`` ("put", "range" or "srange") from ``clients`` sequential clients split over
    ``procs`` processes for ``seconds``, on grpcio (``load``) or :class:`UnaryConn` ("raw");
    with ``leaders`` (the servers' pids) their CPU over the same seconds."""
    pool = _pool(procs)
    start_at = time.time() + 1.0  # every process connects, then they start together
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    futs = [
        pool.submit(
            _worker, endpoints, op, n, sum(per[:i]), seconds, start_at, token, value_size, load
        )
        for i, n in enumerate(per)
        if n
    ]
    cpu = float("nan")
    if leaders:
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = server_cpu(leaders)
        time.sleep(max(0.0, start_at + seconds - time.time()))
        cpu = server_cpu(leaders) - cpu0
    parts = [f.result() for f in futs]
    late = max(p[2] for p in parts) - start_at
    if late > 0.25:
        print(f"  (a load process started {late:.2f} s late)", flush=True)
    lat = sorted(x for p in parts for x in p[0])
    elapsed = max(p[3] for p in parts) - min(p[2] for p in parts)
    return Point(
        ops=len(lat),
        seconds=elapsed,
        latencies=lat,
        errors=sum(p[1] for p in parts),
        server_cpu=cpu,
        loadgen_cpu=sum(p[4] for p in parts),
    )


async def _populate_async(endpoint: str, value_size: int) -> None:
    import grpc

    value = b"v" * value_size
    bodies = iter([bytes(pb.PutRequest(key=k, value=value)) for k in KEYS])
    async with grpc.aio.insecure_channel(endpoint, options=GRPC_OPTIONS) as ch:
        put = ch.unary_unary(PUT)

        async def writer() -> None:
            for body in bodies:
                await put(body)

        await asyncio.gather(*(writer() for _ in range(16)))


def _populate(endpoint: str, value_size: int) -> None:
    asyncio.run(_populate_async(endpoint, value_size))


# --------------------------------------------------------- 100,000 keys as Txns, and the RSS


@dataclass
class Load:
    """Writing ``keys`` keys as Txns into a fresh member; its RSS afterwards."""

    keys: int
    txns: int
    seconds: float
    latencies: list[float]  # per Txn, sorted, seconds
    errors: int
    counted: int  # keys a count-only Range found afterwards
    server_cpu: float
    loadgen_cpu: float
    rss: int = 0  # bytes

    def pct(self, q: float) -> float:
        lat = self.latencies
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")


async def _txn_async(
    endpoint: str, leaders: list[int], keys: int, per_txn: int, senders: int, value_size: int
) -> Load:
    import grpc

    value = b"v" * value_size
    bodies = [
        bytes(
            pb.TxnRequest(
                success=[
                    pb.RequestOp(request_put=pb.PutRequest(key=b"/load/key-%07d" % i, value=value))
                    for i in range(start, min(keys, start + per_txn))
                ]
            )
        )
        for start in range(0, keys, per_txn)
    ]
    todo = iter(bodies)
    lat: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(endpoint, options=GRPC_OPTIONS) as ch:
        txn, rng = ch.unary_unary(TXN), ch.unary_unary(RANGE)
        count = bytes(pb.RangeRequest(key=b"/load/", range_end=b"/load0", count_only=True))
        await rng(count)  # connected

        async def sender() -> None:
            nonlocal errors
            for body in todo:
                t0 = time.perf_counter()
                try:
                    await txn(body)
                except grpc.RpcError:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t0)

        cpu0, scpu0, t0 = _own_cpu(), server_cpu(leaders), time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        seconds = time.perf_counter() - t0
        scpu, cpu = server_cpu(leaders) - scpu0, _own_cpu() - cpu0
        counted = pb.RangeResponse.parse(await rng(count)).count
    return Load(keys, len(bodies), seconds, sorted(lat), errors, counted, scpu, cpu)


def _txn_load(
    endpoint: str, leaders: list[int], keys: int, per_txn: int, senders: int, value_size: int
) -> Load:
    return asyncio.run(_txn_async(endpoint, leaders, keys, per_txn, senders, value_size))


# ------------------------------------------------------------------------ watch fan-out

#: what the writer puts first in each value: the send time, found by a regex in the raw bytes
STAMP = re.compile(rb"ts=(\d{19})")
STAMP_LEN = 22


class WatchConn:
    """One HTTP/2 connection carrying one Watch stream with ``watchers`` watchers of
    :data:`WATCH_KEY`, spoken directly on a socket so that the receiving costs little CPU
    (well under a grpcio client's ~7 µs per message): frames are split with slicing, the
    stream's DATA bytes are searched for the writer's time stamps (:data:`STAMP`) without
    parsing a message, and the windows are opened wide (2^31-1) and topped up past 1 GiB."""

    def __init__(self, endpoint: str, watchers: int, puts: int) -> None:
        import hpack

        host, port = endpoint.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.expected = watchers * puts
        self.pending = watchers  # "created" replies still due
        self.events = 0
        self.last_ns = 0
        self.lats: list[int] = []  # ns
        self._buf = bytearray()
        self._data = bytearray()  # the stream's gRPC bytes not looked at yet
        self._unacked = 0
        req = bytes(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=WATCH_KEY)))
        body = (b"\x00" + struct.pack(">I", len(req)) + req) * watchers
        if len(body) > 65535:  # the server's initial windows
            raise ValueError(f"{watchers} watchers on one connection: use more connections")
        block = hpack.Encoder().encode(_grpc_headers(endpoint, WATCH))
        out = [
            PREFACE,
            _frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, MAX_WINDOW)),  # INITIAL_WINDOW_SIZE
            _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535)),
            _frame(HEADERS, END_HEADERS, 1, block),
        ]
        out += [_frame(DATA, 0, 1, body[i : i + 16384]) for i in range(0, len(body), 16384)]
        self.sock.sendall(b"".join(out))

    def close(self) -> None:
        self.sock.close()

    def on_readable(self) -> None:
        chunk = self.sock.recv(1 << 20)
        now = time.time_ns()
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf = self._buf
        buf += chunk
        pos, end, reply = 0, len(buf), []
        while end - pos >= 9:
            size = int.from_bytes(buf[pos : pos + 3], "big")
            if end - pos < 9 + size:
                break
            kind, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            payload = buf[pos + 9 : pos + 9 + size]
            pos += 9 + size
            if kind == DATA:
                self._unacked += size
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if sid == 1:
                    self._data += payload
            elif kind == HEADERS and sid == 1 and flags & END_STREAM:
                raise ConnectionError("the server ended the Watch stream")
            elif kind == SETTINGS and not flags & ACK:
                reply.append(_frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                reply.append(_frame(PING, ACK, 0, bytes(payload)))
            elif kind in (RST_STREAM, GOAWAY):
                raise ConnectionError(f"the server sent frame type {kind}: {bytes(payload)!r}")
        del buf[:pos]
        data = self._data
        if self.pending:  # count the "created" replies: whole messages
            p = 0
            while self.pending and len(data) - p >= 5:
                size = int.from_bytes(data[p + 1 : p + 5], "big")
                if len(data) - p < 5 + size:
                    break
                p += 5 + size
                self.pending -= 1
            del data[:p]
        if not self.pending and len(data) >= STAMP_LEN:
            stamps = STAMP.findall(data)
            if stamps:
                self.events += len(stamps)
                self.last_ns = now
                self.lats += [now - int(s) for s in stamps]
            del data[: len(data) - (STAMP_LEN - 1)]  # a stamp may be cut at the end
        if self._unacked > 1 << 30:
            inc = struct.pack(">I", self._unacked)
            reply += [_frame(WINDOW_UPDATE, 0, 0, inc), _frame(WINDOW_UPDATE, 0, 1, inc)]
            self._unacked = 0
        if reply:
            self.sock.sendall(b"".join(reply))


@dataclass
class Fanout:
    """A writer's ``puts`` values delivered to ``watchers`` watchers."""

    watchers: int
    puts: int
    events: int
    seconds: float  # from the first put to the last event received
    put_seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    loadgen_cpu: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.events * 1e6 if self.events else float("nan")

    @property
    def loadgen_us(self) -> float:
        return self.loadgen_cpu / self.events * 1e6 if self.events else float("nan")


def _watch_receiver(
    endpoint: str,
    leaders: list[int],
    watchers: int,
    conns: int,
    puts: int,
    ready: str,
    timeout: float,
) -> dict[str, Any]:
    """Create the watchers, say so (the file ``ready``), then receive until every event came
    (or nothing came for ``timeout`` s)."""
    sizes = [watchers // conns + (1 if i < watchers % conns else 0) for i in range(conns)]
    cs = [WatchConn(endpoint, n, puts) for n in sizes if n]
    try:
        if not _pump(cs, lambda: all(not c.pending for c in cs), timeout):
            raise TimeoutError("the watchers were not all created")
        cpu0 = _own_cpu()
        Path(ready).write_text("ready")
        complete = _pump(cs, lambda: all(c.events >= c.expected for c in cs), timeout)
        scpu1, cpu = server_cpu(leaders), _own_cpu() - cpu0
        lats = sorted(x for c in cs for x in c.lats)
    finally:
        for c in cs:
            c.close()
    return {
        "events": sum(c.events for c in cs),
        "complete": complete,
        "last_ns": max(c.last_ns for c in cs),
        "p50_ms": lats[len(lats) // 2] / 1e6 if lats else float("nan"),
        "p99_ms": lats[min(len(lats) - 1, int(0.99 * len(lats)))] / 1e6 if lats else float("nan"),
        "server_cpu1": scpu1,
        "cpu": cpu,
    }


def _watch_writer(
    endpoint: str, leaders: list[int], puts: int, value_size: int, ready: str, timeout: float
) -> dict[str, Any]:
    """Once the watchers exist, put ``puts`` values to :data:`WATCH_KEY`, one after the other,
    each starting with its send time."""
    import grpc

    with grpc.insecure_channel(endpoint, options=GRPC_OPTIONS) as ch:
        put = ch.unary_unary(PUT)
        put(bytes(pb.PutRequest(key=b"/bench/writer", value=b"w")))  # connected
        deadline = time.monotonic() + timeout
        while not Path(ready).exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no watchers")
            time.sleep(0.005)
        cpu0, scpu0, t0 = _own_cpu(), server_cpu(leaders), time.time_ns()
        for _ in range(puts):
            value = (b"ts=%019d" % time.time_ns()).ljust(value_size, b".")
            put(bytes(pb.PutRequest(key=WATCH_KEY, value=value)))
        t1 = time.time_ns()
        return {"first_ns": t0, "last_ns": t1, "server_cpu0": scpu0, "cpu": _own_cpu() - cpu0}


def run_fanout(
    endpoint: str,
    leaders: list[int],
    watchers: int,
    conns: int,
    puts: int,
    value_size: int,
    tmp: Path,
    timeout: float = 30,
) -> Fanout:
    """The receiver and the writer in two load-generator processes."""
    pool = _pool(2)
    ready = tmp / f"watch-ready-{time.time_ns()}"
    fr = pool.submit(_watch_receiver, endpoint, leaders, watchers, conns, puts, str(ready), timeout)
    fw = pool.submit(_watch_writer, endpoint, leaders, puts, value_size, str(ready), 60)
    w, r = fw.result(), fr.result()
    if not r["complete"]:
        print(f"  (only {r['events']:,} of {watchers * puts:,} events arrived)", flush=True)
    return Fanout(
        watchers=watchers,
        puts=puts,
        events=r["events"],
        seconds=(r["last_ns"] - w["first_ns"]) / 1e9,
        put_seconds=(w["last_ns"] - w["first_ns"]) / 1e9,
        p50_ms=r["p50_ms"],
        p99_ms=r["p99_ms"],
        server_cpu=r["server_cpu1"] - w["server_cpu0"],
        loadgen_cpu=r["cpu"] + w["cpu"],
    )


# ------------------------------------------------------------------------- the benchmark


def machine() -> str:
    cpu = "unknown CPU"
    mem = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    return (
        f"{os.cpu_count()} vCPU ({cpu}){mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, etcd "
        + subprocess.run(
            ["/usr/bin/etcd", "--version"], capture_output=True, text=True, check=False
        )
        .stdout.split("\n")[0]
        .split()[-1]
    )


#: sections of docs/performance.md whose scripts are gone (this one replaced them)
RETIRED = ("bench_kv",)


def write_doc(text: str, marker: str = "bench_cluster") -> None:
    """Replace (or append) this script's marked section of docs/performance.md; the main
    benchmark's section also drops the sections in :data:`RETIRED`."""
    doc = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
    current = doc.read_text() if doc.exists() else "# Performance\n"
    if marker == "bench_cluster":
        for old in RETIRED:
            begin, end = f"<!-- {old}:start -->", f"<!-- {old}:end -->"
            if begin in current and end in current:
                head, _, rest = current.partition(begin)
                _, _, tail = rest.partition(end)
                current = head.rstrip("\n") + "\n\n" + tail.lstrip("\n")
    BEGIN, END = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = f"{BEGIN}\n{text.rstrip()}\n{END}\n"
    if BEGIN in current and END in current:
        head, _, rest = current.partition(BEGIN)
        _, _, tail = rest.partition(END)
        current = head + block.rstrip("\n") + tail
    else:
        current = current.rstrip() + "\n\n" + block
    doc.write_text(current)


@dataclass
class Results:
    """Per (label, kind) the rounds' results, in round order."""

    kv: dict[tuple[int, str, int, str], list[Point]] = field(default_factory=dict)
    txn: dict[str, list[Load]] = field(default_factory=dict)
    watch: dict[str, list[Fanout]] = field(default_factory=dict)


@contextlib.contextmanager
def running(kind: str, size: int, root: Path) -> Iterator[tuple[list[str], list[int]]]:
    """A fresh ``size``-member system of ``kind``: (endpoints, the members' pids)."""
    root.mkdir(parents=True)
    procs, eps = start_cluster(kind, root, size=size)
    try:
        try:
            asyncio.run(wait_ready(eps))
        except TimeoutError:
            for log in sorted(root.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log.name} (last lines)", *tail, sep="\n", file=sys.stderr)
            raise
        yield eps, [p.pid for p in procs]
    finally:
        stop(procs)


def _ms(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def bench(args: argparse.Namespace) -> Results:
    """Every part, ``args.rounds`` times, the two systems alternating (and alternating which
    goes first), each system started fresh for its turn."""
    res = Results()
    parts = set(args.parts)
    sizes = sorted(set(args.members) if "kv" in parts else set())
    if "watch" in parts and 1 not in sizes:
        sizes.insert(0, 1)
    _pool(max(2, args.procs))
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        for r in range(args.rounds):
            order = KINDS if r % 2 == 0 else KINDS[::-1]
            tag = f"round {r + 1}/{args.rounds}"
            for size in sizes:
                for kind in order:
                    with running(kind, size, Path(tmp) / f"{r}-{size}-{kind}") as (eps, pids):
                        if "kv" in parts and size in args.members:
                            _pool(2).submit(_populate, eps[0], args.value_size).result()
                            for op in args.ops:
                                for c in args.clients:
                                    p = run_point(
                                        eps,
                                        op,
                                        c,
                                        args.seconds,
                                        args.procs,
                                        leaders=pids,
                                        value_size=args.value_size,
                                        load=args.load,
                                    )
                                    res.kv.setdefault((size, op, c, kind), []).append(p)
                                    print(
                                        f"{tag} {size}m {kind:5} {op:6} c={c:<3} "
                                        f"{p.rate:8,.0f} ops/s  p50 {_ms(p.pct(0.5)):>5} ms  "
                                        f"p99 {_ms(p.pct(0.99)):>5} ms  "
                                        f"server {p.server_us:5,.0f} µs/op ({p.cores:.2f} CPUs)"
                                        f"  load gen {p.loadgen_us:3.0f} µs/op"
                                        f"  errors {p.errors}",
                                        flush=True,
                                    )
                        if "watch" in parts and size == 1:
                            f = run_fanout(
                                eps[0],
                                pids,
                                args.watchers,
                                args.watch_conns,
                                args.watch_puts,
                                args.value_size,
                                Path(tmp),
                            )
                            res.watch.setdefault(kind, []).append(f)
                            print(
                                f"{tag} 1m {kind:5} watch  {f.rate:8,.0f} events/s  "
                                f"p50 {_ms(f.p50_ms)} ms  p99 {_ms(f.p99_ms)} ms  "
                                f"{f.puts / f.put_seconds:,.0f} puts/s  "
                                f"server {f.server_us:.1f} µs/event  "
                                f"load gen {f.loadgen_us:.1f} µs/event",
                                flush=True,
                            )
            if "txn" in parts:
                for kind in order:
                    with running(kind, 1, Path(tmp) / f"{r}-txn-{kind}") as (eps, pids):
                        load = (
                            _pool(2)
                            .submit(
                                _txn_load,
                                eps[0],
                                pids,
                                args.txn_keys,
                                args.txn_ops,
                                args.txn_senders,
                                args.value_size,
                            )
                            .result()
                        )
                        time.sleep(1.0)  # let the last writes settle
                        load.rss = server_rss(pids)
                    res.txn.setdefault(kind, []).append(load)
                    print(
                        f"{tag} 1m {kind:5} txn    {load.keys:,} keys in {load.seconds:.2f} s "
                        f"({load.txns} Txns, p50 {_ms(load.pct(0.5))} ms, p99 "
                        f"{_ms(load.pct(0.99))} ms, server "
                        f"{load.server_cpu / load.keys * 1e6:.0f} µs/key, load gen "
                        f"{load.loadgen_cpu / load.txns * 1e6:.0f} µs/Txn, errors "
                        f"{load.errors}, counted {load.counted:,})  RSS "
                        f"{load.rss / 2**20:.0f} MiB",
                        flush=True,
                    )
    return res


def _median(xs: Iterable[float]) -> float:
    v = [x for x in xs if x == x]
    return statistics.median(v) if v else float("nan")


def _ratio(co: Sequence[Any], et: Sequence[Any], metric: Callable[[Any], float]) -> str:
    """The median of the rounds' coord/etcd ratios of ``metric``, with their range."""
    rs = [metric(c) / metric(e) if metric(e) else float("nan") for c, e in zip(co, et)]
    m = _median(rs)
    if len(rs) < 2:
        return f"{m:.2f}x"
    return f"{m:.2f}x ({min(rs):.2f}-{max(rs):.2f})"


def report(
    args: argparse.Namespace, res: Results, load_before: float, load_after: float, took: float
) -> str:
    med = _median
    command = shlex.join(["python", "scripts/bench_cluster.py", *sys.argv[1:]])
    lines = [
        SECTION,
        "",
        f"`{command}`, {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"{machine()}; 1-minute load average {load_before:.1f} before and {load_after:.1f} "
        f"after; {args.rounds} round{'s' if args.rounds != 1 else ''} in {took / 60:.1f} min.",
        "",
        "Servers, load generator (and whatever else runs here) share this machine; every "
        "system is started fresh for its turn, coord and etcd alternating (and alternating "
        "which goes first), default heartbeat/election, fsync on. Load: "
        f"{LOADS[args.load]} in {args.procs} processes, "
        f"{'/'.join(map(str, args.clients))} concurrent sequential clients spread over the "
        f"members, {args.seconds:g} s per point, "
        f"{args.value_size}-byte values: Put to one of 1,000 keys, Range a single-key get "
        "(linearizable, or `serializable=true`). CPU/op: user + system time of all the "
        "system's server processes over the point (/proc/PID/stat) ÷ ops. Each cell is the "
        f"median of the rounds ({args.rounds}); a ratio is the median of the rounds' "
        "coord/etcd ratios (their range in parentheses).",
        "",
        "| workload | coord ops/s | etcd ops/s | coord/etcd | coord p50/p99 ms | "
        "etcd p50/p99 ms | coord µs CPU/op | etcd µs CPU/op |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    gen: list[str] = []
    for size in args.members:
        for op in args.ops:
            for c in args.clients:
                co, et = res.kv.get((size, op, c, "coord")), res.kv.get((size, op, c, "etcd"))
                if not co or not et:
                    continue
                label = f"{size} member{'s' if size > 1 else ''} {OPS[op]}"
                if len(args.clients) > 1:
                    label += f", {c} clients"
                lat = [
                    f"{_ms(med(p.pct(0.5) for p in ps))} / {_ms(med(p.pct(0.99) for p in ps))}"
                    for ps in (co, et)
                ]
                lines.append(
                    f"| {label} | {med(p.rate for p in co):,.0f} | {med(p.rate for p in et):,.0f}"
                    f" | {_ratio(co, et, lambda p: p.rate)} | {lat[0]} | {lat[1]} | "
                    f"{med(p.server_us for p in co):,.0f} | {med(p.server_us for p in et):,.0f} |"
                )
                gen.append(
                    f"{label} {med(p.loadgen_us for p in co):.0f} / "
                    f"{med(p.loadgen_us for p in et):.0f}"
                )
    tc, te = res.txn.get("coord"), res.txn.get("etcd")
    if tc and te:
        n = tc[0]
        lines.append(
            f"| {n.keys:,} keys written as {n.txns} Txns of {args.txn_ops} Puts, "
            f"{args.txn_senders} senders: seconds (lower is better) | "
            f"{med(x.seconds for x in tc):.1f} s | {med(x.seconds for x in te):.1f} s | "
            f"{_ratio(tc, te, lambda x: x.seconds)} | "
            f"{_ms(med(x.pct(0.5) for x in tc))} / {_ms(med(x.pct(0.99) for x in tc))} per Txn | "
            f"{_ms(med(x.pct(0.5) for x in te))} / {_ms(med(x.pct(0.99) for x in te))} per Txn | "
            f"{med(x.server_cpu / x.keys * 1e6 for x in tc):,.0f} per key | "
            f"{med(x.server_cpu / x.keys * 1e6 for x in te):,.0f} per key |"
        )
        lines.append(
            f"| server RSS (VmRSS) with those {n.keys:,} keys (bar: coord ≤ 1.2x etcd) | "
            f"{med(x.rss for x in tc) / 2**20:,.0f} MiB | "
            f"{med(x.rss for x in te) / 2**20:,.0f} MiB | "
            f"{_ratio(tc, te, lambda x: x.rss)} | | | | |"
        )
        gen.append(
            f"Txn load {med(x.loadgen_cpu / x.txns * 1e6 for x in tc):.0f} / "
            f"{med(x.loadgen_cpu / x.txns * 1e6 for x in te):.0f} per Txn"
        )
    wc, we = res.watch.get("coord"), res.watch.get("etcd")
    if wc and we:
        w = wc[0]
        lines.append(
            f"| 1 member watch fan-out: {w.watchers:,} watchers of one key on "
            f"{args.watch_conns} connections, {w.puts} sequential Puts: events/s delivered "
            f"(bar: ≥ 1.0x) | {med(x.rate for x in wc):,.0f} | {med(x.rate for x in we):,.0f} "
            f"| {_ratio(wc, we, lambda x: x.rate)} | "
            f"{_ms(med(x.p50_ms for x in wc))} / {_ms(med(x.p99_ms for x in wc))} per event | "
            f"{_ms(med(x.p50_ms for x in we))} / {_ms(med(x.p99_ms for x in we))} per event | "
            f"{med(x.server_us for x in wc):.1f} per event | "
            f"{med(x.server_us for x in we):.1f} per event |"
        )
        gen.append(
            f"watch receiver + writer {med(x.loadgen_us for x in wc):.1f} / "
            f"{med(x.loadgen_us for x in we):.1f} per event"
        )
    if gen:
        lines += [
            "",
            "The load generator's own CPU (its processes' user + system time ÷ requests; "
            "during coord's / etcd's turn), µs: " + "; ".join(gen) + ".",
        ]
    lines += ["", _reading(res)]
    return "\n".join(lines) + "\n"


def _reading(res: Results) -> str:
    text = (
        "Reading: the GIL is coord's ceiling. A coord member is one Python process and "
        "uses at most one core, however many the machine has, so one member cannot go past "
        "10^6 ÷ its µs of CPU per op ops/s; etcd's Go runtime spreads one member over all "
        "the cores."
    )
    one = [k for k in res.kv if k[0] == 1 and k[3] == "coord"]
    if one:
        k = next((k for k in one if k[1] == "put"), one[0])
        co, et = res.kv[k], res.kv[(*k[:3], "etcd")]
        text += (
            f" Here, at 1-member {OPS[k[1]]} the coord member kept "
            f"{_median(p.cores for p in co):.2f} CPUs busy ({_median(p.server_us for p in co):,.0f}"
            f" µs/op: at most ~{1e6 / _median(p.server_us for p in co):,.0f} ops/s) and etcd "
            f"{_median(p.cores for p in et):.2f} ({_median(p.server_us for p in et):,.0f} µs/op)"
            f" of this machine's {os.cpu_count()}."
        )
        gen = _median(p.loadgen_us for p in et)
        if gen > 0.5 * _median(p.server_us for p in et):
            text += (
                f" The load generator's own {gen:,.0f} µs per call (during etcd's turn) is of "
                "the order of etcd's CPU per op: it takes cores etcd would otherwise use, so "
                "etcd's rates here are low bounds (`--load raw` costs a few µs per call)."
            )
    text += (
        f" With {os.cpu_count()} vCPUs shared by the servers, the load generator and other "
        "people's work (see the load average), absolute rates move by tens of percent "
        "between runs and the 3-member systems are CPU-starved; the µs of CPU per op is the "
        "steadier number."
    )
    return text


def _nums(text: str, kind: Callable[[str], Any] = int) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=_nums, default=None, help="cluster sizes (default 1,3)")
    ap.add_argument(
        "--ops",
        type=lambda s: _nums(s, str),
        default=list(OPS),
        help="workloads: put,range,srange (default all)",
    )
    ap.add_argument(
        "--parts",
        type=lambda s: _nums(s, str),
        default=list(PARTS),
        help="kv (the --ops at each --members), txn (100,000 keys as Txns; RSS), watch "
        "(fan-out); default all",
    )
    ap.add_argument("--seconds", type=float, default=None, help="per point (default 5)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a short run: 2 s points, 1 round, 20,000 Txn keys, 50 watch Puts (unless given)",
    )
    ap.add_argument("--clients", type=_nums, default=[64], help="concurrent clients (list)")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--txn-keys", type=int, default=None, help="keys of the txn part (100000)")
    ap.add_argument("--txn-ops", type=int, default=128, help="Puts per Txn")
    ap.add_argument("--txn-senders", type=int, default=8, help="concurrent Txn senders")
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--watch-conns", type=int, default=4, help="connections of the watchers")
    ap.add_argument("--watch-puts", type=int, default=None, help="the writer's Puts (200)")
    ap.add_argument(
        "--load",
        choices=["grpcio", "raw"],
        default="grpcio",
        help="the unary load generator: grpcio (C core HTTP/2, ~50-70 µs of CPU per call) or "
        "raw (HTTP/2 spoken on the socket by this script, ~5-15 µs per call)",
    )
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument(
        "--metrics-cost",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only measure 3-member Put with --metrics basic vs off (and etcd), over ROUNDS "
        "interleaved rounds at the first --clients level",
    )
    ap.add_argument(
        "--auth-cost",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only measure 3-member Put and Range with auth off vs on (coord and etcd), over "
        "ROUNDS interleaved rounds at the first --clients level",
    )
    ap.add_argument(
        "--raft-only",
        action="store_true",
        help="only measure 3 in-process RaftNodes (no gRPC) and exit",
    )
    args = ap.parse_args(argv)
    quick = {"seconds": 2.0, "rounds": 1, "txn_keys": 20_000, "watch_puts": 50}
    full = {"seconds": 5.0, "rounds": 3, "txn_keys": 100_000, "watch_puts": 200}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.members is None:
        args.members = [1, 3]
    bad = [x for x in args.ops if x not in OPS] + [x for x in args.parts if x not in PARTS]
    if bad:
        ap.error(f"unknown --ops/--parts {bad}")
    return args


async def raft_only(seconds: float) -> tuple[float, float]:
    """Proposals/s through 3 in-process RaftNodes (real TCP transport, fsync), no gRPC:
    (concurrent proposals/s, sequential latency ms)."""
    import anyio

    from coord.server.command import Kind, encode
    from coord.server.config import Config
    from coord.server.node import RaftNode
    from coord.server.statemachine import StateMachine

    ports = [free_port() for _ in range(3)]
    initial = ",".join(f"r{i}=http://127.0.0.1:{p}" for i, p in enumerate(ports))
    with tempfile.TemporaryDirectory(prefix="bench-raft-") as tmp:
        nodes = [
            await RaftNode.open(
                Config(
                    name=f"r{i}",
                    data_dir=f"{tmp}/r{i}",
                    listen_peer_urls=(f"http://127.0.0.1:{p}",),
                    initial_advertise_peer_urls=(f"http://127.0.0.1:{p}",),
                    initial_cluster=initial,
                ),
                StateMachine(),
            )
            for i, p in enumerate(ports)
        ]
        async with anyio.create_task_group() as tg:
            for n in nodes:
                await tg.start(n.run)
            while not any(n.is_leader() for n in nodes):
                await asyncio.sleep(0.01)
            cmd = encode(Kind.PUT, bytes(pb.PutRequest(key=b"/bench/k", value=b"v" * 100)))
            t0 = time.perf_counter()
            for _ in range(50):
                await nodes[0].propose(cmd)
            latency = (time.perf_counter() - t0) / 50 * 1000
            done = 0
            stop_at = time.monotonic() + seconds

            async def client(n: RaftNode) -> None:
                nonlocal done
                while time.monotonic() < stop_at:
                    await n.propose(cmd)
                    done += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(client(nodes[i % 3]) for i in range(256)))
            rate = done / (time.perf_counter() - t0)
            tg.cancel_scope.cancel()
    return rate, latency


METRICS_SECTION = "## Metrics cost: cluster Put with --metrics basic and off"
#: the variants of --metrics-cost: (name, kind, extra coord flags)
VARIANTS = [
    ("etcd", "etcd", []),
    ("coord metrics on", "coord", ["--metrics", "basic"]),
    ("coord metrics off", "coord", ["--metrics", "off"]),
]


def metrics_cost(args: argparse.Namespace, clients: int) -> str:
    """Put req/s of etcd, coord (--metrics basic) and coord (--metrics off), interleaved over
    ``args.metrics_cost`` rounds (the order rotates each round); a markdown section."""
    load_before = os.getloadavg()[0]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        for r in range(args.metrics_cost):
            for name, kind, extra in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
                root = Path(tmp) / f"{r}-{name.replace(' ', '-')}"
                root.mkdir()
                procs, eps = start_cluster(kind, root, extra)
                try:
                    asyncio.run(wait_ready(eps))
                    p = run_point(
                        eps,
                        "put",
                        clients,
                        args.seconds,
                        args.procs,
                        value_size=args.value_size,
                        load=args.load,
                    )
                finally:
                    stop(procs)
                rate = p.rate
                rates[name].append(rate)
                print(
                    f"round {r + 1} {name:18} put c={clients} {rate:9.0f} req/s errors {p.errors}",
                    flush=True,
                )
    lines = [
        METRICS_SECTION,
        "",
        f"`python scripts/bench_cluster.py --metrics-cost {args.metrics_cost} "
        f"--seconds {args.seconds:g} --clients {clients} --procs {args.procs} "
        f"--load {args.load}`, "
        f"{datetime.date.today().isoformat()}, {machine()}, load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after. Three 3-member "
        "clusters per round, one after the other (order rotating): etcd, coord with "
        "`--metrics basic` (the default: every gRPC call, peer byte and probe counted) and "
        "coord with `--metrics off` (nothing counted per request, no /metrics). Load: "
        f"{LOADS[args.load]}, {args.value_size}-byte values.",
        "",
        "| round | etcd req/s | coord on req/s | coord off req/s | on/off | on/etcd | off/etcd |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    on, off, etcd = rates["coord metrics on"], rates["coord metrics off"], rates["etcd"]
    for r in range(args.metrics_cost):
        lines.append(
            f"| {r + 1} | {etcd[r]:,.0f} | {on[r]:,.0f} | {off[r]:,.0f} | "
            f"{on[r] / off[r]:.3f} | {on[r] / etcd[r]:.2f}x | {off[r] / etcd[r]:.2f}x |"
        )
    med = statistics.median
    lines.append(
        f"| median | {med(etcd):,.0f} | {med(on):,.0f} | {med(off):,.0f} | "
        f"{med(a / b for a, b in zip(on, off, strict=True)):.3f} | "
        f"{med(a / b for a, b in zip(on, etcd, strict=True)):.2f}x | "
        f"{med(a / b for a, b in zip(off, etcd, strict=True)):.2f}x |"
    )
    return "\n".join(lines) + "\n"


AUTH_SECTION = "## Auth cost: Put and Range with auth enabled and disabled"


def _enable_auth(endpoints: list[str]) -> str:
    """Enable auth (root, and user bench with read-write on /bench/) with etcdctl; a token of
    bench's (Authenticate), once every member accepts it (simple tokens are learned as each
    member applies the login)."""
    endpoint = endpoints[0]
    env = {**os.environ, "ETCDCTL_API": "3"}
    for cmd in (
        "user add root:rootpw",
        "user grant-role root root",
        "user add bench:benchpw",
        "role add bench",
        "role grant-permission bench readwrite /bench/ --prefix=true",
        "user grant-role bench bench",
        "auth enable",
    ):
        subprocess.run(
            ["/usr/bin/etcdctl", f"--endpoints={endpoint}", *cmd.split()],
            env=env,
            check=True,
            capture_output=True,
        )
    host, port = endpoint.split(":")

    async def login() -> str:
        ch = Channel(host, int(port), codec=RawCodec())
        try:
            req = bytes(pb.AuthenticateRequest(name="bench", password="benchpw"))
            data = await unary(ch, "/etcdserverpb.Auth/Authenticate", req)
            return pb.AuthenticateResponse.parse(data).token
        finally:
            ch.close()

    async def accepted(token: str) -> None:
        probe = bytes(pb.RangeRequest(key=b"/bench/probe"))
        deadline = time.monotonic() + 30
        for ep in endpoints:
            h, p = ep.split(":")
            ch = Channel(h, int(p), codec=RawCodec())
            try:
                while True:
                    try:
                        await unary(ch, RANGE, probe, token)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.05)
            finally:
                ch.close()

    token = asyncio.run(login())
    asyncio.run(accepted(token))
    return token


def auth_cost(args: argparse.Namespace, clients: int) -> str:
    """Put and Range req/s of etcd and coord clusters with auth off and on (a user limited to
    /bench/, so every request's permission is checked), interleaved over ``args.auth_cost``
    rounds; a markdown section."""
    load_before = os.getloadavg()[0]
    variants = [(k, a) for k in ("etcd", "coord") for a in (False, True)]
    rates: dict[tuple[str, bool, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        for r in range(args.auth_cost):
            for kind, auth in variants[r % 4 :] + variants[: r % 4]:
                root = Path(tmp) / f"{r}-{kind}-{auth}"
                root.mkdir()
                procs, eps = start_cluster(kind, root)
                try:
                    asyncio.run(wait_ready(eps))
                    token = _enable_auth(eps) if auth else ""
                    for op in ("put", "range"):
                        p = run_point(
                            eps,
                            op,
                            clients,
                            args.seconds,
                            args.procs,
                            token,
                            value_size=args.value_size,
                            load=args.load,
                        )
                        rates.setdefault((kind, auth, op), []).append(p.rate)
                        print(
                            f"round {r + 1} {kind} auth={auth} {op} {p.rate:9.0f} req/s "
                            f"errors {p.errors}",
                            flush=True,
                        )
                finally:
                    stop(procs)
    med = statistics.median
    lines = [
        AUTH_SECTION,
        "",
        f"`python scripts/bench_cluster.py --auth-cost {args.auth_cost} "
        f"--seconds {args.seconds:g} --clients {clients} --procs {args.procs} "
        f"--load {args.load}`, "
        f"{datetime.date.today().isoformat()}, {machine()}, load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after. Four 3-member clusters "
        "per round (order rotating): etcd and coord, each with auth off and on. With auth on, "
        "every request carries the token of a user whose role holds read-write on /bench/ "
        "only (so each request's permission is checked; root would skip the check). Load: "
        f"{LOADS[args.load]}, {args.value_size}-byte values. Medians of the rounds.",
        "",
        "| server | op | auth off req/s | auth on req/s | on/off |",
        "|---|---|---:|---:|---:|",
    ]
    for kind in ("etcd", "coord"):
        for op in ("put", "range"):
            off, on = rates[(kind, False, op)], rates[(kind, True, op)]
            ratio = med(a / b for a, b in zip(on, off, strict=True))
            lines.append(f"| {kind} | {op} | {med(off):,.0f} | {med(on):,.0f} | {ratio:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    args = _parse()
    if args.raft_only:
        rate, lat = asyncio.run(raft_only(args.seconds))
        print(f"raft only: {rate:,.0f} proposals/s, sequential latency {lat:.1f} ms")
        return 0
    if not shutil.which("/usr/bin/etcd"):
        print("needs Debian's etcd-server (/usr/bin/etcd)", file=sys.stderr)
        return 2
    if args.auth_cost:
        text = auth_cost(args, args.clients[0])
        print(text)
        if args.write_doc:
            write_doc(text, "bench_auth")
        return 0
    if args.metrics_cost:
        text = metrics_cost(args, args.clients[0])
        print(text)
        if args.write_doc:
            write_doc(text, "bench_metrics")
        return 0
    if args.rounds < 3:
        print(f"note: {args.rounds} round(s); recorded numbers need 3 or more", flush=True)
    load_before, t0 = os.getloadavg()[0], time.monotonic()
    res = bench(args)
    text = report(args, res, load_before, os.getloadavg()[0], time.monotonic() - t0)
    print(text)
    if args.write_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
