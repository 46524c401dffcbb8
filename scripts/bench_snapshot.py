#!/usr/bin/env python3
"""Benchmark coord's etcd-format snapshots against etcd's: save, restore, offline save, memory.

The same data (``--keys`` keys of ``--value-size`` bytes, written as Txns of ``--txn-ops`` Puts
by grpcio, C core, pre-serialized bytes in and out) is loaded into a fresh single-member
coord-server and a fresh single-member etcd (/usr/bin/etcd) on loopback. Then, in
``--rounds`` interleaved rounds (round 1 coord first, round 2 etcd first, ...):

* online save: the wall time of ``etcdctl snapshot save`` against each server, and the
  server's VmRSS before and after and its VmHWM (peak RSS) after (/proc/PID/status), i.e. the
  server's memory cost of streaming a snapshot;
* restore: the wall time and peak RSS (``os.wait4`` on the child, ru_maxrss) of
  ``coord-server snapshot restore`` of coord's file and of ``etcdctl snapshot restore`` of
  etcd's file.

Then coord is stopped and ``coord-server snapshot save --data-dir`` (offline save from the
stopped member's data directory) is timed ``--rounds`` times (etcd has no counterpart).
``snapshot status`` is run on each file, and the restored coord data directory is started
once to check that it serves every key. Reported: medians and ranges over the rounds.

Usage::

    python scripts/bench_snapshot.py [--keys 100000] [--value-size 256] [--rounds 3]
                                     [--write docs/performance.md]

``--write PATH`` replaces this script's section (between ``<!-- bench_snapshot:start -->``
and ``<!-- bench_snapshot:end -->``) of the markdown file, appending it if missing; the rest
of the file is left untouched.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from coord._pb import etcdserverpb as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import GRPC_OPTIONS, RANGE, TXN, free_port, machine

HEADING = "## Snapshots: online save, restore and offline save (coord vs etcd)"
START, END = "<!-- bench_snapshot:start -->", "<!-- bench_snapshot:end -->"
ETCD = "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
COORD = shutil.which("coord-server", path=str(Path(sys.executable).parent)) or "coord-server"
PREFIX = b"/snap/key-"
PREFIX_END = b"/snap/key."  # "." follows "-"


# ------------------------------------------------------------------------------ servers


@dataclass
class Server:
    kind: str  # "coord" or "etcd"
    proc: subprocess.Popen[bytes]
    endpoint: str
    data_dir: Path
    log: Path


def _server_argv(kind: str, name: str, data_dir: Path, cport: int, pport: int) -> list[str]:
    peer = f"http://127.0.0.1:{pport}"
    flags = [
        "--name",
        name,
        "--data-dir",
        str(data_dir),
        "--listen-client-urls",
        f"http://127.0.0.1:{cport}",
        "--advertise-client-urls",
        f"http://127.0.0.1:{cport}",
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        f"{name}={peer}",
        "--log-level",
        "warn",
    ]
    return [ETCD if kind == "etcd" else COORD, *flags]


def count_keys(endpoint: str, timeout: float = 2.0) -> int:
    """Keys under :data:`PREFIX` (a linearizable count-only Range: needs a leader)."""
    body = bytes(pb.RangeRequest(key=PREFIX, range_end=PREFIX_END, count_only=True))
    with grpc.insecure_channel(endpoint, options=GRPC_OPTIONS) as ch:
        rng = ch.unary_unary(RANGE, request_serializer=None, response_deserializer=None)
        return int(pb.RangeResponse.parse(rng(body, timeout=timeout)).count)


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``pred`` (never a fixed sleep) until true; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def start_server(
    kind: str, root: Path, data_dir: Path | None = None, name: str = "bench"
) -> Server:
    """A single member of ``kind`` on free loopback ports (``data_dir``: an existing one, e.g.
    a restored member's); retried on new ports if it lost a port race."""
    data_dir = data_dir or root / f"{kind}.data"
    for attempt in range(3):
        cport, pport = free_port(), free_port()
        log = root / f"{kind}-{data_dir.name}-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                _server_argv(kind, name, data_dir, cport, pport),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(kind, proc, f"127.0.0.1:{cport}", data_dir, log)

        def ready(server: Server = server) -> bool:
            if server.proc.poll() is not None:
                return True
            try:
                count_keys(server.endpoint, timeout=1.0)
            except grpc.RpcError:
                return False
            return True

        wait_until(ready, 60, f"{kind} on {server.endpoint}")
        if proc.poll() is None:
            return server
        text = log.read_text(errors="replace")
        if "address already in use" not in text.lower() or attempt == 2:
            raise RuntimeError(f"{kind} exited with {proc.returncode}:\n{text[-3000:]}")
    raise AssertionError("unreachable")


def stop_server(server: Server, timeout: float = 30) -> None:
    """SIGTERM (a clean shutdown), SIGKILL after ``timeout`` seconds."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def proc_mem(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


# ------------------------------------------------------------------------------ loading


def load(endpoint: str, keys: int, value_size: int, per_txn: int, in_flight: int) -> float:
    """Write ``keys`` keys as Txns of ``per_txn`` Puts, ``in_flight`` at a time (grpcio
    futures on one channel, bodies serialized beforehand); returns the seconds taken."""
    value = b"v" * value_size
    bodies = [
        bytes(
            pb.TxnRequest(
                success=[
                    pb.RequestOp(
                        request_put=pb.PutRequest(key=b"%s%07d" % (PREFIX, i), value=value)
                    )
                    for i in range(start, min(keys, start + per_txn))
                ]
            )
        )
        for start in range(0, keys, per_txn)
    ]
    t0 = time.perf_counter()
    with grpc.insecure_channel(endpoint, options=GRPC_OPTIONS) as ch:
        txn = ch.unary_unary(TXN, request_serializer=None, response_deserializer=None)
        pending: list[grpc.Future] = []
        for body in bodies:
            if len(pending) >= in_flight:
                pending.pop(0).result(timeout=60)
            pending.append(txn.future(body, timeout=60))
        for fut in pending:
            fut.result(timeout=60)
    seconds = time.perf_counter() - t0
    got = count_keys(endpoint)
    if got != keys:
        raise RuntimeError(f"{endpoint}: {got} keys after the load, expected {keys}")
    return seconds


# ------------------------------------------------------------------------------ children


@dataclass
class Run:
    seconds: float
    maxrss_kib: int
    rc: int
    output: str


def timed(argv: Sequence[str], tmp: Path, check: bool = True) -> Run:
    """Run ``argv``; its wall time and its own peak RSS (``os.wait4``'s ru_maxrss, KiB)."""
    out_path = tmp / "child.out"
    env = {**os.environ, "ETCDCTL_API": "3"}
    with out_path.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = out_path.read_text(errors="replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}:\n{output[-3000:]}")
    return Run(seconds, usage.ru_maxrss, proc.returncode, output)


def restore_argv(kind: str, snap: Path, data_dir: Path) -> list[str]:
    peer = f"http://127.0.0.1:{free_port()}"
    flags = [
        str(snap),
        "--data-dir",
        str(data_dir),
        "--name",
        "restored",
        "--initial-cluster",
        f"restored={peer}",
        "--initial-advertise-peer-urls",
        peer,
    ]
    if kind == "coord":
        return [COORD, "snapshot", "restore", *flags]
    return [ETCDCTL, "snapshot", "restore", *flags]


def status(kind: str, snap: Path, tmp: Path) -> str:
    exe = [COORD] if kind == "coord" else [ETCDCTL]
    run = timed([*exe, "snapshot", "status", str(snap), "-w", "json"], tmp, check=False)
    text = run.output.strip()
    if run.rc != 0:
        return f"exit {run.rc}: {text[-500:]}"
    try:
        return json.dumps(json.loads(text.splitlines()[-1]), separators=(", ", ": "))
    except (ValueError, IndexError):
        return text[-500:]


# ------------------------------------------------------------------------------ report


def med_range(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "—"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def secs(values: Sequence[float]) -> str:
    return med_range(values, "{:.2f}") + " s" if values else "—"


def mib(values: Sequence[float]) -> str:
    return med_range([v / 1024 for v in values], "{:.0f}") + " MiB" if values else "—"


def ratio(a: Sequence[float], b: Sequence[float]) -> str:
    """Median of the per-round ratios a/b, with their range."""
    if not a or not b:
        return "—"
    return med_range([x / y for x, y in zip(a, b, strict=True)], "{:.2f}") + "x"


def write_section(path: Path, text: str) -> None:
    current = path.read_text() if path.exists() else "# Performance\n"
    block = f"{START}\n{text.rstrip()}\n{END}"
    if START in current and END in current:
        head, _, rest = current.partition(START)
        _, _, tail = rest.partition(END)
        current = head + block + tail
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(current)


# ------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--txn-ops", type=int, default=128, help="Puts per Txn of the load")
    ap.add_argument("--in-flight", type=int, default=8, help="Txns in flight during the load")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", type=Path, help="markdown file to update (own section only)")
    args = ap.parse_args()

    t_begin, load_before = time.monotonic(), os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    servers: list[Server] = []
    save: dict[str, list[Run]] = {"coord": [], "etcd": []}
    restore: dict[str, list[Run]] = {"coord": [], "etcd": []}
    offline: list[Run] = []
    mem: dict[str, list[tuple[int, int, int, int]]] = {"coord": [], "etcd": []}
    files: dict[str, Path] = {}
    problems: list[str] = []
    try:
        coord = start_server("coord", tmp)
        servers.append(coord)
        etcd = start_server("etcd", tmp)
        servers.append(etcd)
        by_kind = {"coord": coord, "etcd": etcd}
        load_s = {}
        for kind, server in by_kind.items():
            load_s[kind] = load(
                server.endpoint, args.keys, args.value_size, args.txn_ops, args.in_flight
            )
            print(f"loaded {args.keys:,} keys into {kind} in {load_s[kind]:.1f} s", flush=True)

        for r in range(args.rounds):
            order = ("coord", "etcd") if r % 2 == 0 else ("etcd", "coord")
            for kind in order:
                server = by_kind[kind]
                snap = tmp / f"{kind}-online-{r}.db"
                snap.unlink(missing_ok=True)
                rss0, hwm0 = proc_mem(server.proc.pid)
                run = timed(
                    [ETCDCTL, f"--endpoints={server.endpoint}", "snapshot", "save", str(snap)],
                    tmp,
                )
                rss1, hwm1 = proc_mem(server.proc.pid)
                save[kind].append(run)
                mem[kind].append((rss0, hwm0, rss1, hwm1))
                if kind in files:
                    files[kind].unlink(missing_ok=True)
                files[kind] = snap
            for kind in order:
                target = tmp / f"restore-{kind}-{r}"
                run = timed(restore_argv(kind, files[kind], target), tmp)
                restore[kind].append(run)
                if r + 1 < args.rounds:
                    shutil.rmtree(target, ignore_errors=True)
            print(
                f"round {r + 1}: save coord {save['coord'][-1].seconds:.2f} s, etcd "
                f"{save['etcd'][-1].seconds:.2f} s; restore coord "
                f"{restore['coord'][-1].seconds:.2f} s, etcd {restore['etcd'][-1].seconds:.2f} s",
                flush=True,
            )

        statuses = {kind: status(kind, files[kind], tmp) for kind in files}

        # a restored coord member must serve every key
        restored = start_server(
            "coord", tmp, tmp / f"restore-coord-{args.rounds - 1}", name="restored"
        )
        servers.append(restored)
        restored_keys = count_keys(restored.endpoint)
        if restored_keys != args.keys:
            problems.append(f"the restored coord member serves {restored_keys} keys")
        stop_server(restored)

        stop_server(coord)
        offline_file = tmp / "coord-offline.db"
        for _ in range(args.rounds):
            offline_file.unlink(missing_ok=True)
            offline.append(
                timed(
                    [
                        COORD,
                        "snapshot",
                        "save",
                        "--data-dir",
                        str(coord.data_dir),
                        str(offline_file),
                    ],
                    tmp,
                )
            )
        statuses["coord offline"] = status("coord", offline_file, tmp)
        files["coord offline"] = offline_file
        sizes = {kind: path.stat().st_size for kind, path in files.items()}
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.monotonic() - t_begin
    load_after = os.getloadavg()[0]
    cmd = "python scripts/bench_snapshot.py " + " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in (("keys", args.keys), ("value_size", args.value_size), ("rounds", args.rounds))
    )
    if args.write:
        cmd += " --write docs/performance.md"

    def t(runs: list[Run]) -> list[float]:
        return [x.seconds for x in runs]

    def m(runs: list[Run]) -> list[float]:
        return [float(x.maxrss_kib) for x in runs]

    data_mib = args.keys * args.value_size / 2**20
    lines = [
        HEADING,
        "",
        f"Command: `{cmd}`  ",
        f"Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"Machine: {machine()}  ",
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after; "
        f"{args.rounds} rounds in {elapsed / 60:.1f} min.",
        "",
        f"One single-member coord-server and one single-member etcd on loopback, each loaded "
        f"with the same {args.keys:,} keys x {args.value_size}-byte values ({data_mib:.0f} MiB "
        f"of values; Txns of {args.txn_ops} Puts by grpcio: coord {load_s['coord']:.1f} s, "
        f"etcd {load_s['etcd']:.1f} s). Online save: `etcdctl snapshot save` against each "
        "server (etcdctl's wall time and peak RSS). Restore: `coord-server snapshot restore` "
        "of coord's file, `etcdctl snapshot restore` of etcd's. Offline save: `coord-server "
        "snapshot save --data-dir` of the stopped coord member (etcd has no counterpart). "
        "Times are wall times of the child process, peak RSS is its ru_maxrss (`os.wait4`); "
        f"median (range) of {args.rounds} interleaved rounds, ratio = median of the per-round "
        "ratios. Target: within 3x etcd's time, memory bounded (independent of the data size).",
        "",
        "| operation | coord time | etcd time | coord/etcd | coord peak RSS | etcd peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
        f"| online save (`etcdctl snapshot save`) | {secs(t(save['coord']))} | "
        f"{secs(t(save['etcd']))} | {ratio(t(save['coord']), t(save['etcd']))} | "
        f"{mib(m(save['coord']))} (etcdctl) | {mib(m(save['etcd']))} (etcdctl) |",
        f"| restore | {secs(t(restore['coord']))} | {secs(t(restore['etcd']))} | "
        f"{ratio(t(restore['coord']), t(restore['etcd']))} | {mib(m(restore['coord']))} | "
        f"{mib(m(restore['etcd']))} |",
        f"| offline save (`coord-server snapshot save --data-dir`) | {secs(t(offline))} | — | "
        f"— | {mib(m(offline))} | — |",
        "",
    ]
    lines.append(
        "File sizes: "
        + ", ".join(f"{kind} {size / 2**20:.1f} MiB ({size:,} B)" for kind, size in sizes.items())
        + "."
    )
    lines.append("")
    for kind in ("coord", "etcd"):
        rows = mem[kind]
        lines.append(
            f"{kind} server memory around an online save: VmRSS "
            f"{mib([x[0] for x in rows])} before, {mib([x[2] for x in rows])} after; VmHWM "
            f"(peak since start) {mib([x[1] for x in rows])} before, "
            f"{mib([x[3] for x in rows])} after (per round; round 1's VmHWM before is the "
            "load's peak).  "
        )
    lines.append("")
    lines.append("`snapshot status -w json`:  ")
    for kind, text in statuses.items():
        lines.append(f"{kind}: `{text}`  ")
    lines.append("")
    lines.append(
        f"The coord member restored from coord's file serves {restored_keys:,} of "
        f"{args.keys:,} keys."
    )
    if problems:
        lines += ["", "Problems: " + "; ".join(problems) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(args.write, text)
        print(f"wrote {args.write}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
