"""``coord-server cluster``: run a local multi-member cluster as child processes on loopback.

Theory of operation: member ``i`` (``m1``, ``m2``, ...) gets client port ``base + 2*i`` and peer
port ``base + 2*i + 1`` (with the default base 2379 the first member uses etcd's 2379/2380) and
the data directory ``<data-dir>/m<i>``.  Every member is started with the same
``--initial-cluster`` (state ``new``; a member whose data directory already holds a WAL restarts
from it and ignores the flag), so the cluster forms on its own.  Any extra arguments are
passed to every member (``--heartbeat-interval 50`` ...).

Ports are checked before any member starts (:func:`choose_base`, binding each as a member
would): when the block at ``--base-port`` is busy (say a ``coord-server`` on 2379 still runs),
a *new* cluster moves to the next free block (``base + 2*size*k``) and says so.  The base used
is recorded in ``<data-dir>/cluster.json``: members keep their peer URLs in their WAL, so a
restart must use the same ports, and one whose ports are busy stops with one line instead.

The parent prints the client endpoints and an ``ETCDCTL_ENDPOINTS=`` line, then waits;
SIGINT/SIGTERM is forwarded to the children as SIGTERM, and the parent exits once they have
all stopped (SIGKILL after a timeout).  A member that exits with an error (it failed to start,
or crashed) stops the whole cluster with one line and exit code 1: a cluster quietly running
with 2 of 3 members is worse than none.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .listen import ListenError, bind_url, close_all

__all__ = ["ClusterError", "choose_base", "main", "member_args"]

#: Blocks tried after the one at --base-port before giving up.
MAX_MOVES = 100
#: Where the base port a cluster was created with is kept.
STATE_FILE = "cluster.json"


class ClusterError(Exception):
    """The cluster cannot start (the message says why, in one line)."""


def busy_port(size: int, base_port: int, host: str = "127.0.0.1") -> str | None:
    """The first URL of the block at ``base_port`` that cannot be listened on, with the reason
    (None when every port is free)."""
    for port in range(base_port, base_port + 2 * size):
        try:
            close_all(bind_url(f"http://{host}:{port}", "the cluster"))
        except ListenError as e:
            return str(e).removeprefix("cannot listen for the cluster on ")
    return None


def choose_base(size: int, base_port: int, data_dir: Path, host: str = "127.0.0.1") -> int:
    """The base port to use: the recorded one for an existing cluster (which cannot move), else
    the first free block from ``base_port`` on (see the module docstring).

    Raises:
        ClusterError: the recorded block is busy, or no free block was found.
    """
    state = data_dir / STATE_FILE
    if state.exists() or any((data_dir / f"m{i + 1}").exists() for i in range(size)):
        # an existing cluster (one made before cluster.json was kept used --base-port)
        fixed = int(json.loads(state.read_text())["base_port"]) if state.exists() else base_port
        why = busy_port(size, fixed, host)
        if why is not None:
            raise ClusterError(
                f"the cluster in {data_dir} uses ports {fixed}-{fixed + 2 * size - 1} (its "
                f"members keep their peer URLs) and {why}; stop what uses it, or use another "
                f"--data-dir"
            )
        return fixed
    base = base_port
    for _ in range(MAX_MOVES):
        if base + 2 * size > 65536:
            break
        why = busy_port(size, base, host)
        if why is None:
            if base != base_port:
                print(
                    f"ports {base_port}-{base_port + 2 * size - 1} are busy "
                    f"({busy_port(size, base_port, host)}); using {base}-{base + 2 * size - 1}",
                    flush=True,
                )
            return base
        base += 2 * size
    raise ClusterError(f"no block of {2 * size} free ports from {base_port} on")


def member_args(
    size: int,
    base_port: int,
    data_dir: Path,
    host: str = "127.0.0.1",
    token: str = "coord-local-cluster",
) -> list[list[str]]:
    """The command-line flags of each member of a local cluster."""
    names = [f"m{i + 1}" for i in range(size)]
    peer = {n: f"http://{host}:{base_port + 2 * i + 1}" for i, n in enumerate(names)}
    initial = ",".join(f"{n}={peer[n]}" for n in names)
    out = []
    for i, n in enumerate(names):
        client = f"http://{host}:{base_port + 2 * i}"
        out.append(
            [
                "--name",
                n,
                "--data-dir",
                str(data_dir / n),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer[n],
                "--initial-advertise-peer-urls",
                peer[n],
                "--initial-cluster",
                initial,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                token,
            ]
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coord-server cluster``."""
    p = argparse.ArgumentParser(
        prog="coord-server cluster",
        description="Start a local coord cluster (child processes on loopback). Unknown "
        "arguments are passed to every member.",
    )
    p.add_argument("--size", type=int, default=3, help="number of members")
    p.add_argument(
        "--data-dir",
        default="coord-cluster.data",
        help="folder holding every member's data directory",
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=2379,
        help="member i listens for clients on base+2i and for peers on base+2i+1; "
        "a new cluster whose ports are busy moves to the next free block",
    )
    args, extra = p.parse_known_args(argv)
    if args.size < 1:
        p.error("--size must be at least 1")
    data_dir = Path(args.data_dir).absolute()
    try:
        base = choose_base(args.size, args.base_port, data_dir)
    except ClusterError as e:
        print(f"coord-server cluster: {e}", file=sys.stderr, flush=True)
        return 1
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / STATE_FILE).write_text(json.dumps({"base_port": base, "size": args.size}) + "\n")
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False
    failed = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    endpoints = []
    for flags in member_args(args.size, base, data_dir):
        procs.append(subprocess.Popen([sys.executable, "-m", "coord.server", *flags, *extra]))
        endpoints.append(flags[flags.index("--advertise-client-urls") + 1])
    for flags, ep in zip(member_args(args.size, base, data_dir), endpoints):
        print(f"member {flags[1]}: client {ep}  data {flags[3]}", flush=True)
    print("ETCDCTL_ENDPOINTS=" + ",".join(e.removeprefix("http://") for e in endpoints), flush=True)
    print("Ctrl-C stops the cluster.", flush=True)
    try:
        while not stopping and not failed:
            for i, proc in enumerate(procs):
                if proc.returncode is None and proc.poll() is not None:
                    if proc.returncode == 0:  # stopped cleanly (e.g. removed from the cluster)
                        print(f"member m{i + 1} stopped", flush=True)
                        continue
                    print(
                        f"coord-server cluster: member m{i + 1} exited with code "
                        f"{proc.returncode}; stopping the cluster",
                        file=sys.stderr,
                        flush=True,
                    )
                    failed = True
                    break
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
    if failed:
        return 1
    return 0 if all(proc.returncode == 0 for proc in procs) or stopping else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
