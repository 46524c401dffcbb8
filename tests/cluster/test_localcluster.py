"""``coord-server cluster --size 3``: one command starts a working local cluster and stops it."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest
from cluster.clusterlib import status
from support import Proc, free_port_block, port_open, wait_for

pytestmark = pytest.mark.etcdctl


def test_cluster_command(tmp_path: Path) -> None:
    from support import etcdctl

    base = free_port_block(6)
    proc = Proc(
        [
            sys.executable,
            "-m",
            "coord.server",
            "cluster",
            "--size",
            "3",
            "--data-dir",
            str(tmp_path / "data"),
            "--base-port",
            str(base),
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ],
        tmp_path / "cluster.log",
    )
    try:
        wait_for(lambda: "ETCDCTL_ENDPOINTS=" in proc.output(), timeout=20, what="endpoints")
        m = re.search(r"ETCDCTL_ENDPOINTS=(\S+)", proc.output())
        assert m is not None
        endpoints = m.group(1).split(",")
        assert endpoints == [f"127.0.0.1:{base + 2 * i}" for i in range(3)]

        def all_agree() -> bool:
            sts = [status(ep) for ep in endpoints]
            return (
                all(s is not None and s.leader for s in sts)
                and len({s.leader for s in sts if s is not None}) == 1
            )

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
