"""``hasleader`` streams end with ``etcdserver: no leader`` when the member loses its leader."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster.clusterlib import Cluster
from support import Proc, etcdctl, require_binary, wait_for

pytestmark = pytest.mark.etcdctl


def test_watch_on_follower_ends_when_quorum_is_lost(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    watch: Proc | None = None
    try:
        leader = c.wait_leader()
        follower, other = [m for m in c.members if m is not leader]
        watch = Proc([require_binary("etcdctl"), f"--endpoints={follower.endpoint}", "watch",
                      "/rl/k"], tmp_path / "watch.log", env={"ETCDCTL_API": "3"})

        def established() -> bool:
            etcdctl(leader.endpoint, "put", "/rl/k", "marker")
            return "marker" in watch.output()

        wait_for(established, timeout=15, what="watch established", interval=0.2)
        c.kill(leader)
        c.kill(other)
        wait_for(lambda: not watch.alive() or "no leader" in watch.output(), timeout=30,
                 what="watch canceled for lack of a leader")
        assert "etcdserver: no leader" in watch.output()
    finally:
        if watch is not None:
            watch.kill()
            watch.stop()
        c.stop()
