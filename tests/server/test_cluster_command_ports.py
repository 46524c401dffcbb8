"""``coord-server cluster``: busy default ports move a new cluster to free ones (kept across
restarts), and a member that fails to start anyway stops the whole cluster with one line."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest
from support import Proc, etcdctl, free_port_block, grpc_status_ok, port_open, wait_for

pytestmark = pytest.mark.etcdctl


def _cluster(tmp: Path, data: Path, base: int, log: str) -> Proc:
    return Proc(
        [
            sys.executable,
            "-m",
            "coord.server",
            "cluster",
            "--size",
            "3",
            "--data-dir",
            str(data),
            "--base-port",
            str(base),
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ],
        tmp / log,
    )


def _endpoints(proc: Proc) -> list[str]:
    wait_for(
        lambda: "ETCDCTL_ENDPOINTS=" in proc.output() or not proc.alive(),
        timeout=30,
        what="the ETCDCTL_ENDPOINTS line",
    )
    m = re.search(r"ETCDCTL_ENDPOINTS=(\S+)", proc.output())
    assert m is not None, proc.output()
    return m.group(1).split(",")


def _serving(endpoints: list[str]) -> None:
    for ep in endpoints:
        wait_for(
            functools.partial(grpc_status_ok, int(ep.split(":")[1])),
            timeout=60,
            what=f"member {ep} with a leader",
        )


def test_busy_ports_move_a_new_cluster_and_restart_keeps_them(tmp_path: Path) -> None:
    base = free_port_block(12)
    data = tmp_path / "data"
    blocker = socket.socket()  # a stranger on m2's peer port (base + 3)
    blocker.bind(("127.0.0.1", base + 3))
    blocker.listen()
    proc = _cluster(tmp_path, data, base, "first.log")
    try:
        endpoints = _endpoints(proc)
        moved = base + 6
        assert endpoints == [f"127.0.0.1:{moved + 2 * i}" for i in range(3)], proc.output()
        assert (
            f"ports {base}-{base + 5} are busy (http://127.0.0.1:{base + 3}: address "
            f"already in use); using {moved}-{moved + 5}"
        ) in proc.output()
        assert f"member m1: client http://127.0.0.1:{moved}" in proc.output()
        _serving(endpoints)
        etcdctl(",".join(endpoints), "put", "/moved/k", "v")
        assert json.loads((data / "cluster.json").read_text())["base_port"] == moved
        proc.kill(signal.SIGTERM)
        assert proc.popen.returncode == 0, proc.output()
        first_out = proc.output()
    finally:
        proc.stop()
    # the members keep their peer URLs: a restart uses the recorded ports, even once the
    # block at --base-port is free again
    blocker.close()
    again = _cluster(tmp_path, data, base, "second.log")
    try:
        assert _endpoints(again) == endpoints
        assert "are busy" not in again.output()
        _serving(endpoints)
        assert etcdctl(endpoints[2], "get", "/moved/k", "--print-value-only").stdout == "v\n"
        assert "Traceback" not in first_out + again.output()
    finally:
        again.stop()


def test_member_failing_to_start_stops_the_cluster(tmp_path: Path) -> None:
    base = free_port_block(6)
    data = tmp_path / "data"
    (data / "m2").mkdir(parents=True)
    # another process holds m2's data directory, so m2 fails after the port check
    fd = os.open(data / "m2" / "coord.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        proc = _cluster(tmp_path, data, base, "cluster.log")
        try:
            wait_for(lambda: not proc.alive(), timeout=60, what="the cluster command to exit")
            out = proc.output()
            assert proc.popen.returncode == 1, out
            stop_lines = [ln for ln in out.splitlines() if "stopping the cluster" in ln]
            assert stop_lines == [
                "coord-server cluster: member m2 exited with code 1; stopping the cluster"
            ], out
            assert len([ln for ln in out.splitlines() if "cannot serve" in ln]) == 1, out
            assert f"data directory {data / 'm2'} is in use" in out
            assert "Traceback" not in out
            for port in (base, base + 1, base + 4, base + 5):  # m1 and m3 were stopped too
                assert not port_open(port)
        finally:
            proc.stop()
    finally:
        os.close(fd)
