"""``coord-server cluster --size 3``: one command starts a working local cluster and stops it."""

from __future__ import annotations

import random
import re
import signal
import socket
import sys
from pathlib import Path

import pytest
from cluster.clusterlib import status
from support import Proc, port_open, wait_for

pytestmark = pytest.mark.etcdctl


def free_block(n: int) -> int:
    """A base port with ``n`` consecutive free ports, below Linux's ephemeral range
    (32768+), so the ports other tests get from bind(0) or outgoing connections never land in
    it while the cluster starts."""
    for _ in range(100):
        base = random.randrange(20000, 32000 - n, 2)
        if all(_bindable(base + i) for i in range(n)):
            return base
    raise AssertionError("no free port block")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_cluster_command(tmp_path: Path) -> None:
    from support import etcdctl

    base = free_block(6)
    proc = Proc([sys.executable, "-m", "coord.server", "cluster", "--size", "3",
                 "--data-dir", str(tmp_path / "data"), "--base-port", str(base),
                 "--heartbeat-interval", "50", "--election-timeout", "500"],
                tmp_path / "cluster.log")
    try:
        wait_for(lambda: "ETCDCTL_ENDPOINTS=" in proc.output(), timeout=20, what="endpoints")
        m = re.search(r"ETCDCTL_ENDPOINTS=(\S+)", proc.output())
        assert m is not None
        endpoints = m.group(1).split(",")
        assert endpoints == [f"127.0.0.1:{base + 2 * i}" for i in range(3)]

        def all_agree() -> bool:
            sts = [status(ep) for ep in endpoints]
            return all(s is not None and s.leader for s in sts) and \
                len({s.leader for s in sts if s is not None}) == 1

        wait_for(all_agree, timeout=30, what="a leader on every member")
        etcdctl(endpoints[1], "put", "/lc/k", "v")
        assert etcdctl(endpoints[2], "get", "/lc/k", "--print-value-only").stdout == "v\n"
        assert (tmp_path / "data" / "m3" / "member" / "wal").is_dir()
        proc.kill(signal.SIGTERM)  # SIGTERM to the group, as Ctrl-C would be
        assert proc.popen.returncode == 0, proc.output()
        assert "cluster stopped" in proc.output()
        for ep in endpoints:
            assert not port_open(int(ep.split(":")[1]))
    finally:
        proc.stop()
