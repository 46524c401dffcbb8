#!/usr/bin/env python3
"""Where a request's CPU goes: µs of coord-server CPU per Put and per Range, layer by layer.

Starts one coord-server member (or a 3-member cluster with ``--cluster``: the leader and a
follower are profiled), drives it with bench_cluster.py's grpcio load generator (C core, so
the load costs the server's CPUs little), and meanwhile

* reads the server's own CPU time (user + system, /proc/PID/stat) and counts the requests
  answered: total µs of server CPU per request;
* samples it with py-spy (``--idle`` off: on-CPU stacks only, every thread, native frames
  off) and charges each sample to the first layer found walking its stack from the leaf
  upwards (:data:`LAYERS`), so a sample counts once, in the innermost layer that owns it
  (samples of idle worker threads, :data:`IDLE_LEAVES`, are left out).

The µs of a layer is its share of the samples times the total µs per request.

    python scripts/profile_request.py [--seconds 15] [--clients 64] [--cluster]

Needs py-spy (``pip install py-spy``; it must be allowed to ptrace the server: root, or
``kernel.yama.ptrace_scope=0``) and grpcio.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cluster as bc  # the load generator and the cluster launcher

#: (layer, substrings of a frame's file path or function); checked in this order per frame
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("WAL and fsync", ("server/storage/",)),
    ("Raft", ("server/raft/",)),
    ("node (Ready loop, proposals, apply driver)", ("server/node/",)),
    ("peer transport", ("server/transport/",)),
    ("MVCC apply and reads", ("server/mvcc/", "server/statemachine.py", "server/lease/")),
    ("API handlers (decode, validate, encode)", ("server/api/", "server/auth/", "coord/_p")),
    (
        "HTTP/2 framing (h2conn, hpack)",
        ("server/http/h2", "server/http/callstream", "coord/_h2wire", "(h2/", "(hpack/"),
    ),
    ("gRPC framing and dispatch (grpclib)", ("(grpclib/", "(multidict/")),
    ("asyncio event loop and transports", ("(asyncio/", "(selectors.py", "(socket.py")),
    ("anyio and threads (cancel scopes, to_thread)", ("(threading.py", "(concurrent/", "(anyio/")),
]
OTHER = "other"


#: leaf frames of a thread that is waiting, not running: py-spy reports anyio's idle worker
#: threads blocked in ``Condition.wait`` as active, which would charge them to "threads"
IDLE_LEAVES = ("Condition.wait (threading.py",)


def _idle(stack: list[str]) -> bool:
    return stack[0].startswith(IDLE_LEAVES)


def _classify(stack: list[str]) -> str:
    for frame in stack:  # leaf first
        for layer, needles in LAYERS:
            if any(n in frame for n in needles):
                return layer
    return OTHER


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _unclassified(path: Path, n: int = 8) -> list[tuple[str, int]]:
    """The most frequent leaf frames of samples no layer claimed (to extend LAYERS)."""
    leaves: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and not _idle(frames[::-1]) and _classify(frames[::-1]) == OTHER:
            leaves[frames[-1]] += int(count)
    return leaves.most_common(n)


def _collapsed(path: Path) -> collections.Counter[str]:
    """py-spy's --format raw: 'frame;frame;...;leaf count' lines -> samples per layer."""
    out: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = list(reversed(stack.split(";")))
        if stack and not _idle(frames):
            out[_classify(frames)] += int(count)
    return out


def profile(op: str, seconds: float, clients: int, cluster: bool, tmp: Path) -> list[str]:
    (tmp / op).mkdir()
    procs, eps = bc.start_cluster("coord", tmp / op, size=3 if cluster else 1)
    try:
        asyncio.run(bc.wait_ready(eps))
        pids = [p.pid for p in procs]
        raws = {pid: tmp / f"{op}-{pid}.txt" for pid in pids}
        spies = [
            subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--duration",
                    str(int(seconds)),
                    "--output",
                    str(raws[pid]),
                    "--threads",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid in pids
        ]
        cpu0 = {pid: _cpu_seconds(pid) for pid in pids}
        rate = bc.run_point(eps, op, clients, seconds, 2, value_size=100).rate
        cpu = {pid: _cpu_seconds(pid) - cpu0[pid] for pid in pids}
        for s in spies:
            s.wait(60)
    finally:
        bc.stop(procs)
    requests = rate * seconds
    lines = []
    # the busiest process is the leader (it does the most per request)
    for rank, pid in enumerate(sorted(pids, key=lambda p: -cpu[p])[: 2 if cluster else 1]):
        role = "leader" if rank == 0 else "follower"
        per = cpu[pid] / requests * 1e6 if requests else float("nan")
        layers = _collapsed(raws[pid]) if raws[pid].exists() else collections.Counter()
        total = sum(layers.values()) or 1
        where = role if cluster else "single member"
        lines.append(
            f"| {op} | {where} | **{per:,.0f}** | total ({rate:,.0f} req/s, "
            f"{cpu[pid] / seconds:.2f} CPUs) |"
        )
        for layer, n in layers.most_common():
            lines.append(f"| | | {per * n / total:,.0f} | {layer} ({100 * n / total:.0f}%) |")
        if layers[OTHER] and raws[pid].exists():
            print(f"{op} {where}: unclassified leaves {_unclassified(raws[pid])}", file=sys.stderr)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--cluster", action="store_true", help="a 3-member cluster")
    args = ap.parse_args()
    rows = [
        "| op | process | µs CPU per request | layer |",
        "|---|---|---:|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
        for op in ("put", "range"):
            rows += profile(op, args.seconds, args.clients, args.cluster, Path(tmp))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
