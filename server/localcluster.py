"""``coord-server cluster``: run a local multi-member cluster as child processes on loopback.

Theory of operation: member ``i`` (``m1``, ``m2``, ...) gets client port ``base + 2*i`` and peer
port ``base + 2*i + 1`` (with the default base 2379 the first member uses etcd's 2379/2380) and
the data directory ``<data-dir>/m<i>``.  Every member is started with the same
``--initial-cluster`` (state ``new``; a member whose data directory already holds a WAL restarts
from it and ignores the flag), so the cluster forms on its own.  Any extra arguments are
passed to every member (``--heartbeat-interval 50`` ...).  The parent prints the client
endpoints and an ``ETCDCTL_ENDPOINTS=`` line, then waits; SIGINT/SIGTERM is forwarded to the
children as SIGTERM, and the parent exits once they have all stopped (SIGKILL after a timeout).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

__all__ = ["main", "member_args"]


def member_args(size: int, base_port: int, data_dir: Path, host: str = "127.0.0.1",
                token: str = "coord-local-cluster") -> list[list[str]]:
    """The command-line flags of each member of a local cluster."""
    names = [f"m{i + 1}" for i in range(size)]
    peer = {n: f"http://{host}:{base_port + 2 * i + 1}" for i, n in enumerate(names)}
    initial = ",".join(f"{n}={peer[n]}" for n in names)
    out = []
    for i, n in enumerate(names):
        client = f"http://{host}:{base_port + 2 * i}"
        out.append([
            "--name", n, "--data-dir", str(data_dir / n),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer[n], "--initial-advertise-peer-urls", peer[n],
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
        ])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coord-server cluster``."""
    p = argparse.ArgumentParser(
        prog="coord-server cluster",
        description="Start a local coord cluster (child processes on loopback). Unknown "
                    "arguments are passed to every member.")
    p.add_argument("--size", type=int, default=3, help="number of members")
    p.add_argument("--data-dir", default="coord-cluster.data",
                   help="folder holding every member's data directory")
    p.add_argument("--base-port", type=int, default=2379,
                   help="member i listens for clients on base+2i and for peers on base+2i+1")
    args, extra = p.parse_known_args(argv)
    if args.size < 1:
        p.error("--size must be at least 1")
    data_dir = Path(args.data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    endpoints = []
    for flags in member_args(args.size, args.base_port, data_dir):
        procs.append(subprocess.Popen([sys.executable, "-m", "coord.server", *flags, *extra]))
        endpoints.append(flags[flags.index("--advertise-client-urls") + 1])
    for flags, ep in zip(member_args(args.size, args.base_port, data_dir), endpoints):
        print(f"member {flags[1]}: client {ep}  data {flags[3]}", flush=True)
    print("ETCDCTL_ENDPOINTS=" + ",".join(e.removeprefix("http://") for e in endpoints),
          flush=True)
    print("Ctrl-C stops the cluster.", flush=True)
    try:
        while not stopping:
            for i, proc in enumerate(procs):
                if proc.returncode is None and proc.poll() is not None:
                    print(f"member m{i + 1} exited with code {proc.returncode}", flush=True)
            if all(proc.returncode is not None for proc in procs):
                break
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print("cluster stopped", flush=True)
    return 0 if all(proc.returncode == 0 for proc in procs) or stopping else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
