"""Benchmark: Put and linearizable Range on a 3-member coord cluster next to a 3-member etcd.

Both clusters run on this machine on loopback with their default timing (heartbeat 100 ms,
election 1000 ms) and fsync'ed storage; the same load generator (``--procs`` asyncio processes,
grpclib with a pass-through codec so client-side protobuf cost is small and identical) drives
``--clients`` concurrent sequential clients spread round-robin over the three members (as
etcd's clientv3 balancer does), for ``--seconds`` per point.  Requests: Put of a 16-byte key
out of 1000 with a 100-byte value; Range (linearizable) of one such key.

Usage::

    python scripts/bench_cluster.py [--seconds 5] [--clients 16,64,256] [--procs 2] [--write-doc]
    python scripts/bench_cluster.py --metrics-cost 3 --clients 64 --load grpcio [--write-doc]
    python scripts/bench_cluster.py --auth-cost 3 --clients 64 --load grpcio [--write-doc]

``--write-doc`` replaces the "Cluster throughput" section of docs/performance.md (the rest of
the file belongs to others and is left untouched).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.encoding.base import CodecBase

from coord._pb import etcdserverpb as pb

SECTION = "## Cluster throughput: 3-member coord vs 3-member etcd"
PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
STATUS = "/etcdserverpb.Maintenance/Status"


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
    processes and endpoints."""
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
    md = {"token": token} if token else None
    async with ch.request(path, Cardinality.UNARY_UNARY, bytes, bytes, metadata=md) as stream:
        await stream.send_message(body, end=True)
        data = await stream.recv_message()
        if data is None:
            raise RuntimeError(f"{path}: the stream ended without a reply")
        return data


def _worker(
    endpoints: list[str],
    op: str,
    clients: int,
    offset: int,
    seconds: float,
    start_at: float,
    load: str,
    token: str,
) -> tuple[list[float], int, float]:
    """One load-generator process: latencies, errors, elapsed."""
    return asyncio.run(_load(endpoints, op, clients, offset, seconds, start_at, load, token))


def run_point(
    endpoints: list[str],
    op: str,
    clients: int,
    seconds: float,
    procs: int,
    load: str = "grpclib",
    token: str = "",
) -> tuple[float, float, int]:
    """(requests/s, p99 latency ms, errors) with the clients split over ``procs`` processes."""
    import concurrent.futures

    start_at = time.time() + 1.5  # all processes start together
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    with concurrent.futures.ProcessPoolExecutor(procs) as ex:
        futs = [
            ex.submit(_worker, endpoints, op, n, sum(per[:i]), seconds, start_at, load, token)
            for i, n in enumerate(per)
            if n
        ]
        parts = [f.result() for f in futs]
    lat = sorted(x for p in parts for x in p[0])
    elapsed = max(p[2] for p in parts)
    p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
    return len(lat) / elapsed, p99, sum(p[1] for p in parts)


def _callers(endpoints: list[str], load: str, token: str = "") -> tuple[list[Any], Any]:
    """Per endpoint ``call(path, body) -> bytes`` (sending ``token`` as auth metadata if
    given), and a function closing them all.

    ``grpcio`` (bench-only dependency) does its HTTP/2 in C, so the load generator costs little
    CPU of its own; ``grpclib`` is pure Python, like the servers' side of coord."""
    if load == "grpcio":
        import grpc

        gchans = [grpc.aio.insecure_channel(ep) for ep in endpoints]

        md = (("token", token),) if token else None

        def gcaller(ch: Any) -> Any:
            stubs = {path: ch.unary_unary(path) for path in (PUT, RANGE)}
            return lambda path, body: stubs[path](body, metadata=md)

        async def gclose() -> None:
            for ch in gchans:
                await ch.close()

        return [gcaller(ch) for ch in gchans], gclose
    chans = [Channel(ep.split(":")[0], int(ep.split(":")[1]), codec=RawCodec()) for ep in endpoints]

    async def close() -> None:
        for ch in chans:
            ch.close()

    return [lambda path, body, ch=ch: unary(ch, path, body, token) for ch in chans], close


async def _load(
    endpoints: list[str],
    op: str,
    clients: int,
    offset: int,
    seconds: float,
    start_at: float,
    load: str,
    token: str = "",
) -> tuple[list[float], int, float]:
    channels, close = _callers(endpoints, load, token)
    keys = [f"/bench/key-{i:06d}".encode() for i in range(1000)]
    value = b"v" * 100
    puts = [bytes(pb.PutRequest(key=k, value=value)) for k in keys]
    ranges = [bytes(pb.RangeRequest(key=k)) for k in keys]
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
                if op == "put":
                    await ch(PUT, puts[n % 1000])
                else:
                    await ch(RANGE, ranges[n % 1000])
            except Exception:
                errors += 1
                continue
            lat.append(time.perf_counter() - t0)

    # warm-up (connections, first keys)
    for ch in channels:
        await ch(PUT, puts[0])
    await asyncio.sleep(max(0.0, start_at - time.time()))
    stop_at = time.monotonic() + seconds
    t_start = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.monotonic() - t_start
    await close()
    return lat, errors, elapsed


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


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} vCPU ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, etcd "
        + subprocess.run(
            ["/usr/bin/etcd", "--version"], capture_output=True, text=True, check=False
        )
        .stdout.split("\n")[0]
        .split()[-1]
    )


def write_doc(text: str, marker: str = "bench_cluster") -> None:
    """Replace (or append) this script's marked section of docs/performance.md."""
    BEGIN, END = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    doc = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
    current = doc.read_text() if doc.exists() else "# Performance\n"
    block = f"{BEGIN}\n{text.rstrip()}\n{END}\n"
    if BEGIN in current and END in current:
        head, _, rest = current.partition(BEGIN)
        _, _, tail = rest.partition(END)
        current = head + block.rstrip("\n") + tail
    else:
        current = current.rstrip() + "\n\n" + block
    doc.write_text(current)


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


READING = (
    "Reading: everything (3 members of one system, the load generator, and other people's "
    "test runs: see the load average) shares 2 vCPUs, so both systems are CPU-starved and "
    "ratios move by tens of percent between runs; rerun on an idle machine before drawing "
    "conclusions. What limits coord is per-request CPU in each member process, not "
    "consensus: grpclib/h2 costs ~0.5-1 ms of CPU per unary call, plus request decoding and "
    "the Python apply, and a write sent to a follower also costs it a forwarding hop and an "
    "apply. Without gRPC, 3 in-process RaftNodes over the real TCP transport with fsync "
    "commit {raft_rate:,.0f} proposals/s (256 concurrent proposers, group commit: one fsync "
    "per Ready) with {raft_lat:.1f} ms sequential latency (`--raft-only`)."
)


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
    import statistics

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
                    rate = run_point(eps, "put", clients, args.seconds, args.procs, args.load)[0]
                finally:
                    stop(procs)
                rates[name].append(rate)
                print(f"round {r + 1} {name:18} put c={clients} {rate:9.0f} req/s", flush=True)
    lines = [
        METRICS_SECTION,
        "",
        f"`python scripts/bench_cluster.py --metrics-cost {args.metrics_cost} "
        f"--seconds {args.seconds:g} --clients {clients} --procs {args.procs} "
        f"--load {args.load}`, {datetime.date.today().isoformat()}, {machine()}, load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after. Three 3-member "
        "clusters per round, one after the other (order rotating): etcd, coord with "
        "`--metrics basic` (the default: every gRPC call, peer byte and probe counted) and "
        "coord with `--metrics off` (nothing counted per request, no /metrics).",
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
    import statistics

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
                        rate = run_point(
                            eps, op, clients, args.seconds, args.procs, args.load, token
                        )[0]
                        rates.setdefault((kind, auth, op), []).append(rate)
                        print(f"round {r + 1} {kind} auth={auth} {op} {rate:9.0f} req/s")
                finally:
                    stop(procs)
    med = statistics.median
    lines = [
        AUTH_SECTION,
        "",
        f"`python scripts/bench_cluster.py --auth-cost {args.auth_cost} "
        f"--seconds {args.seconds:g} --clients {clients} --procs {args.procs} "
        f"--load {args.load}`, {datetime.date.today().isoformat()}, {machine()}, load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after. Four 3-member clusters "
        "per round (order rotating): etcd and coord, each with auth off and on. With auth on, "
        "every request carries the token of a user whose role holds read-write on /bench/ "
        "only (so each request's permission is checked; root would skip the check). Medians "
        "of the rounds.",
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", default="16,64,256")
    ap.add_argument(
        "--procs",
        type=int,
        default=2,
        help="load-generator processes (one grpclib client tops out near 1-2k req/s on a slow VM)",
    )
    ap.add_argument(
        "--load",
        choices=["grpclib", "grpcio"],
        default="grpclib",
        help="load-generator client: grpcio (C core, little CPU of its own; "
        "pip install grpcio) or grpclib (pure Python)",
    )
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument(
        "--metrics-cost",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only measure Put with --metrics basic vs off (and etcd), over ROUNDS interleaved "
        "rounds at the first --clients level",
    )
    ap.add_argument(
        "--auth-cost",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only measure Put and Range with auth off vs on (coord and etcd), over ROUNDS "
        "interleaved rounds at the first --clients level",
    )
    ap.add_argument(
        "--raft-only",
        action="store_true",
        help="only measure 3 in-process RaftNodes (no gRPC) and exit",
    )
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    if args.raft_only:
        rate, lat = asyncio.run(raft_only(args.seconds))
        print(f"raft only: {rate:,.0f} proposals/s, sequential latency {lat:.1f} ms")
        return 0
    if not shutil.which("/usr/bin/etcd"):
        print("needs Debian's etcd-server (/usr/bin/etcd)", file=sys.stderr)
        return 2
    if args.auth_cost:
        text = auth_cost(args, levels[0])
        print(text)
        if args.write_doc:
            write_doc(text, "bench_auth")
        return 0
    if args.metrics_cost:
        text = metrics_cost(args, levels[0])
        print(text)
        if args.write_doc:
            write_doc(text, "bench_metrics")
        return 0
    load_before = os.getloadavg()[0]
    results: dict[tuple[str, str, int], tuple[float, float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        root = Path(tmp)
        for kind in ("etcd", "coord"):
            procs, eps = start_cluster(kind, root)
            try:
                asyncio.run(wait_ready(eps))
                for op in ("put", "range"):
                    for c in levels:
                        r = run_point(eps, op, c, args.seconds, args.procs, args.load)
                        results[(kind, op, c)] = r
                        print(
                            f"{kind:5} {op:5} c={c:<4} {r[0]:9.0f} req/s  "
                            f"p99 {r[1]:7.1f} ms  errors {r[2]}",
                            flush=True,
                        )
            finally:
                stop(procs)
    lines = [
        SECTION,
        "",
        f"`python scripts/bench_cluster.py --seconds {args.seconds:g} "
        f"--clients {args.clients} --procs {args.procs} --load {args.load}"
        f"{' --write-doc' if args.write_doc else ''}`, "
        f"{datetime.date.today().isoformat()}, {machine()}, load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after. Both clusters: "
        "3 members on loopback on this same machine (so servers and load generator share "
        "the CPUs), "
        f"default heartbeat/election, fsync on. Load: {args.load} clients in --procs "
        "processes, pass-through codec, clients spread round-robin over the 3 members; "
        "Put = 100-byte values over 1000 keys, Range = linearizable single-key get.",
        "",
        "| op | clients | coord req/s | etcd req/s | coord/etcd | coord p99 ms | etcd p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op in ("put", "range"):
        for c in levels:
            co, et = results[("coord", op, c)], results[("etcd", op, c)]
            ratio = co[0] / et[0] if et[0] else float("nan")
            lines.append(
                f"| {op} | {c} | {co[0]:,.0f} | {et[0]:,.0f} | {ratio:.2f}x | "
                f"{co[1]:.1f} | {et[1]:.1f} |"
            )
    raft_rate, raft_lat = asyncio.run(raft_only(args.seconds))
    lines += ["", READING.format(raft_rate=raft_rate, raft_lat=raft_lat)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
