"""Leases on a cluster: keep-alives and TTL queries via followers reach the leader's timer."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, get
from support import etcdctl, wait_for

pytestmark = pytest.mark.etcdctl


def remaining(endpoint: str, lease: str) -> int:
    out = etcdctl(endpoint, "lease", "timetolive", lease).stdout
    m = re.search(r"remaining\((-?\d+)s\)", out)
    if m is None:
        assert "already expired" in out, out
        return -1
    return int(m.group(1))


def test_keepalive_through_follower_and_expiry(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    try:
        leader = c.wait_leader()
        f1, f2 = [m for m in c.members if m is not leader]
        out = etcdctl(f1.endpoint, "lease", "grant", "3").stdout
        lease = re.search(r"lease ([0-9a-f]+) granted", out)
        assert lease is not None
        lid = lease.group(1)
        etcdctl(f1.endpoint, "put", "--lease", lid, "/lease/k", "v")
        # keep it alive only through followers for well over its TTL
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end:
            out = etcdctl(f2.endpoint, "lease", "keep-alive", "--once", lid).stdout
            assert "TTL(3)" in out, out
            left = remaining(f1.endpoint, lid)
            assert 0 <= left <= 3
            time.sleep(0.5)  # the keep-alive cadence (not waiting for state)
        assert get(leader.endpoint, "/lease/k") == "v"
        # stop keeping it alive: the leader revokes it and every member sees the key go
        wait_for(lambda: get(f2.endpoint, "/lease/k") is None, timeout=10, what="lease expiry")
        assert remaining(f1.endpoint, lid) == -1
    finally:
        c.stop()


def test_new_leader_extends_leases(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    try:
        leader = c.wait_leader()
        follower = next(m for m in c.members if m is not leader)
        out = etcdctl(follower.endpoint, "lease", "grant", "4").stdout
        lease = re.search(r"lease ([0-9a-f]+) granted", out)
        assert lease is not None
        etcdctl(follower.endpoint, "put", "--lease", lease.group(1), "/lease/x", "v")
        c.kill(leader)
        t_kill = time.monotonic()
        c.wait_leader(c.running())
        # the new leader gave the lease a fresh deadline: it outlives its original TTL
        while time.monotonic() - t_kill < 3.5:
            assert get(follower.endpoint, "/lease/x") == "v"
            time.sleep(0.2)
        wait_for(
            lambda: get(follower.endpoint, "/lease/x") is None,
            timeout=15,
            what="expiry under the new leader",
        )
    finally:
        c.stop()
