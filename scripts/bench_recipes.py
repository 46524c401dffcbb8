#!/usr/bin/env python3
"""Benchmark coord.recipes.Lock against python-etcd3's Lock on the same etcd.

Measures, for each implementation:

* uncontended latency of ``acquire()`` + ``release()`` (one process, N rounds; p50/p90/p99);
* contended hand-off rate: K processes loop acquire/release on one lock for D seconds; the
  rate is the total number of grants per second (each grant is one hand-off).

coord's Lock is measured twice: with its own session per acquisition (``with Lock(client,
name):``: lease grant + txn + lease revoke) and with a shared :class:`Session` (txn +
delete). python-etcd3 (unmaintained, breaks on protobuf>=4) runs from its own venv (created
under /tmp on first use with ``etcd3==0.12.0``, ``protobuf<4`` and ``tenacity<7``, since
0.12.0's retry hook uses the pre-7 tenacity wait signature) as subprocesses; its Lock
grants a fresh lease per attempt, is a single key and wakes every waiter on each release.

Usage::

    python scripts/bench_recipes.py [--endpoint HOST:PORT] [--rounds 300] [--procs 4]
                                    [--seconds 5] [--write docs/performance.md]

Without ``--endpoint`` a temporary single-member etcd (/usr/bin/etcd) is started on free
loopback ports. ``--write`` replaces this script's section of the given markdown file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ETCD3_VENV = Path(os.environ.get("ETCD3_VENV", "/tmp/etcd3venv"))
HEADING = "## Recipes: Lock latency and hand-off rate (coord.recipes vs python-etcd3)"
START, END = "<!-- bench_recipes:start -->", "<!-- bench_recipes:end -->"

OURS = r"""
import json, sys, time
from coord import Client
from coord.recipes import Lock, Session
endpoint, name, mode, arg, start_at = sys.argv[1:6]
with Client(endpoint) as client:
    if mode == "latency" or mode == "latency-session":
        session = Session(client, ttl=10) if mode == "latency-session" else None
        out = []
        for _ in range(int(arg)):
            t = time.perf_counter()
            lock = Lock(client, name, ttl=10, session=session)
            lock.acquire()
            lock.release()
            out.append(time.perf_counter() - t)
        if session is not None:
            session.close()
        print(json.dumps(out))
    else:
        session = Session(client, ttl=10) if mode == "contend-session" else None
        time.sleep(max(float(start_at) - time.time(), 0))
        end = time.monotonic() + float(arg)
        n = 0
        while time.monotonic() < end:
            lock = Lock(client, name, ttl=10, session=session)
            lock.acquire()
            lock.release()
            n += 1
        print(json.dumps(n))
"""

ETCD3 = r"""
import json, sys, time
import etcd3
endpoint, name, mode, arg, start_at = sys.argv[1:6]
host, port = endpoint.rsplit(":", 1)
client = etcd3.client(host=host, port=int(port))
if mode == "latency":
    out = []
    for _ in range(int(arg)):
        t = time.perf_counter()
        lock = client.lock(name, ttl=10)
        lock.acquire(timeout=None)
        lock.release()
        out.append(time.perf_counter() - t)
    print(json.dumps(out))
else:
    time.sleep(max(float(start_at) - time.time(), 0))
    end = time.monotonic() + float(arg)
    n = 0
    while time.monotonic() < end:
        lock = client.lock(name, ttl=10)
        # a waiter can miss its wake-up (release between its failed txn and its watch) and
        # then waits for the next event: bound each wait by the remaining time
        if lock.acquire(timeout=max(end - time.monotonic(), 0.05)):
            lock.release()
            n += 1
    print(json.dumps(n))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_etcd(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway single-member etcd on loopback; returns (process, endpoint)."""
    cport, pport = free_port(), free_port()
    exe = shutil.which("etcd") or "/usr/bin/etcd"
    proc = subprocess.Popen(
        [
            exe,
            "--name",
            "bench",
            "--data-dir",
            str(tmp / "etcd"),
            "--listen-client-urls",
            f"http://127.0.0.1:{cport}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{cport}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{pport}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{pport}",
            "--initial-cluster",
            f"bench=http://127.0.0.1:{pport}",
            "--log-level",
            "warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"127.0.0.1:{cport}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{endpoint}/health", timeout=1) as r:
                if b'"true"' in r.read():
                    return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("etcd did not become healthy")


def etcd3_python() -> str:
    """The python of a venv holding python-etcd3 (created on first use)."""
    py = ETCD3_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ETCD3_VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "etcd3==0.12.0", "protobuf<4", "tenacity<7"],
            check=True,
        )
    return str(py)


def run(python: str, code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    return subprocess.Popen(
        [python, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),
        env=env,
    )


def latency(
    python: str, code: str, endpoint: str, name: str, mode: str, rounds: int
) -> dict[str, float]:
    out, _ = run(python, code, endpoint, name, mode, str(rounds), "0").communicate()
    samples = sorted(json.loads(out))
    q = statistics.quantiles(samples, n=100)
    return {
        "p50_ms": q[49] * 1e3,
        "p90_ms": q[89] * 1e3,
        "p99_ms": q[98] * 1e3,
        "mean_ms": statistics.fmean(samples) * 1e3,
    }


def handoff(
    python: str,
    code: str,
    endpoint: str,
    name: str,
    procs: int,
    seconds: float,
    mode: str = "contend",
) -> tuple[float, list[int]]:
    """Grants per second over all processes, and each process's grant count (fairness)."""
    start_at = time.time() + 3.0  # let every process connect first
    ps = [
        run(python, code, endpoint, name, mode, str(seconds), str(start_at)) for _ in range(procs)
    ]
    counts = [int(json.loads(p.communicate()[0])) for p in ps]
    return sum(counts) / seconds, sorted(counts)


def workqueue_latency(
    endpoint: str, name: str, workers: int = 4, items: int = 400, rate: float = 250.0
) -> dict[str, float]:
    """Put ``items`` at ``rate``/s into a WorkQueue; ``workers`` (own clients) get and ack.

    Returns percentiles of the time from ``put`` to a worker's ``get`` returning the item.
    Producer and workers share this one process (asyncio).
    """
    import asyncio

    from coord import AsyncClient
    from coord.recipes import WorkQueue

    async def run() -> list[float]:
        clients = [AsyncClient(endpoint) for _ in range(workers + 1)]
        sent: dict[bytes, float] = {}
        lat: list[float] = []
        done = asyncio.Event()

        async def worker(client: AsyncClient) -> None:
            queue = WorkQueue(client, name)
            while not done.is_set():
                item = await queue.get(timeout=1)
                if item is None:
                    continue
                lat.append(time.perf_counter() - sent[item.value])
                await item.ack()
                if len(lat) >= items:
                    done.set()

        async def producer() -> None:
            queue = WorkQueue(clients[0], name)
            for i in range(items):
                sent[str(i).encode()] = time.perf_counter()
                await queue.put(str(i))
                await asyncio.sleep(1 / rate)

        try:
            await asyncio.gather(producer(), *(worker(c) for c in clients[1:]))
        finally:
            for c in clients:
                await c.aclose()
        return lat

    q = statistics.quantiles(asyncio.run(run()), n=100)
    return {"p50_ms": q[49] * 1e3, "p90_ms": q[89] * 1e3, "p99_ms": q[98] * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", help="existing etcd (default: start a temporary one)")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--write", type=Path, help="markdown file to update (own section only)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-recipes-"))
    etcd = None
    endpoint = args.endpoint
    if endpoint is None:
        etcd, endpoint = start_etcd(tmp)
    try:
        e3 = etcd3_python()
        tag = str(int(time.time()))
        ours_own = latency(
            sys.executable, OURS, endpoint, f"/bench/{tag}/a", "latency", args.rounds
        )
        ours_shared = latency(
            sys.executable, OURS, endpoint, f"/bench/{tag}/b", "latency-session", args.rounds
        )
        theirs = latency(e3, ETCD3, endpoint, f"bench-{tag}-a", "latency", args.rounds)
        ours_rate = handoff(
            sys.executable, OURS, endpoint, f"/bench/{tag}/c", args.procs, args.seconds
        )
        shared_rate = handoff(
            sys.executable,
            OURS,
            endpoint,
            f"/bench/{tag}/d",
            args.procs,
            args.seconds,
            "contend-session",
        )
        theirs_rate = handoff(e3, ETCD3, endpoint, f"bench-{tag}-c", args.procs, args.seconds)
        wq = workqueue_latency(endpoint, f"/bench/{tag}/wq")
        rows: list[tuple[str, dict[str, float], tuple[float, list[int]] | None]] = [
            ("coord.recipes.Lock (own session per acquire)", ours_own, ours_rate),
            ("coord.recipes.Lock (shared Session)", ours_shared, shared_rate),
            ("python-etcd3 0.12.0 Lock", theirs, theirs_rate),
        ]
    finally:
        if etcd is not None:
            etcd.kill()
            etcd.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    etcd_version = (
        subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        if shutil.which("etcd")
        else "?"
    )
    against = f" (against {args.endpoint})" if args.endpoint else ""
    lines = [
        HEADING,
        "",
        f"Command: `python scripts/bench_recipes.py --rounds {args.rounds} --procs "
        f"{args.procs} --seconds {args.seconds:g}`{against}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}, Python {platform.python_version()}; server: "
        f"{etcd_version} single member on loopback (fsync on the local disk)",
        "",
        f"Uncontended `acquire()` + `release()` ({args.rounds} rounds, one process) and "
        f"contended hand-off rate ({args.procs} processes looping on one lock for "
        f"{args.seconds:g} s; grants per second):",
        "",
        "| implementation | p50 ms | p90 ms | p99 ms | mean ms | hand-offs/s |"
        " grants per process |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, lat, rate in rows:
        lines.append(
            f"| {label} | {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} | "
            f"{lat['p99_ms']:.2f} | {lat['mean_ms']:.2f} | "
            f"{f'{rate[0]:.0f}' if rate else '-'} | "
            f"{', '.join(map(str, rate[1])) if rate else '-'} |"
        )
    lines += [
        "",
        "Notes: our Lock with its own session costs lease grant + txn + lease revoke "
        "(3 round trips, the lease is kept alive while held); with a shared Session "
        "it is txn + delete. python-etcd3 costs lease grant + txn + txn and leaves each "
        "lease to expire; its waiters all wake on every release (herd) and each retry "
        "grants another lease. Our waiters watch only their predecessor and are "
        "granted in arrival order (equal grants per process); python-etcd3's releaser "
        "may win again at once. A waiter's watch starts from now, not from its read's "
        "revision: etcd serves watches that start in the past from a 100 ms resync "
        "loop (this capped hand-offs at ~60/s before).",
        "",
        "WorkQueue delivery latency (coord.recipes only: python-etcd3 has none): one "
        "producer puts 400 items at 250/s, 4 workers (each its own AsyncClient, all in "
        "one process) get and ack; time from `put` to `get` returning the item: "
        f"p50 {wq['p50_ms']:.1f} ms, p90 {wq['p90_ms']:.1f} ms, p99 {wq['p99_ms']:.1f} ms "
        "(p50 14.5 ms and p99 100 ms when waits watched from a past revision).",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(args.write, section)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this script's section of ``path``, leaving the rest untouched.

    The section sits between ``<!-- bench_recipes:start -->`` and ``<!-- bench_recipes:end
    -->`` markers (the file's convention: each benchmark script rewrites only its own part).
    The file is re-read right before writing.
    """
    block = f"{START}\n{section.rstrip()}\n{END}\n"
    text = (
        path.read_text()
        if path.exists()
        else (
            "# Performance\n\nMeasured numbers, one section per benchmark; each script rewrites "
            "only its own section.\n"
        )
    )
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


if __name__ == "__main__":
    main()
