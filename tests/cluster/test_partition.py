"""Network partition through the test-controlled peer proxy: no stale data from the minority."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, get, put, status
from support import wait_for


def fails(fn: Callable[..., object], *args: object) -> bool:
    """True when the call raises (error or timeout) instead of answering."""
    try:
        fn(*args, timeout=3.0)
    except Exception:
        return True
    return False


@pytest.mark.parametrize("victim", ["leader", "follower"])
def test_minority_serves_nothing_stale(tmp_path: Path, victim: str) -> None:
    c = Cluster(tmp_path, proxy=True).start()
    assert c.proxy is not None
    try:
        leader = c.wait_leader()
        put(leader.endpoint, "/part/k", "before")
        cut = leader if victim == "leader" else next(m for m in c.members if m is not leader)
        majority = [m for m in c.members if m is not cut]
        # the put returned once a quorum had it, which need not include a follower victim
        wait_for(
            lambda: get(cut.endpoint, "/part/k", serializable=True) == "before",
            timeout=10,
            what="the victim to apply the first write",
        )
        c.proxy.isolate(cut.id)
        new_leader = c.wait_leader(majority, timeout=15)
        assert new_leader in majority
        # the majority keeps going
        put(majority[0].endpoint, "/part/k", "after")
        assert get(majority[1].endpoint, "/part/k") == "after"
        # the minority: no linearizable read (never the stale "before"), no write
        assert fails(get, cut.endpoint, "/part/k")
        assert fails(put, cut.endpoint, "/part/minority", "x")
        # a serializable read is allowed to be stale, and is
        assert get(cut.endpoint, "/part/k", serializable=True) == "before"
        # heal: everyone converges on the majority's history
        c.proxy.heal()
        wait_for(
            lambda: get(cut.endpoint, "/part/k", serializable=True) == "after",
            timeout=20,
            what="the minority to catch up",
        )
        c.wait_converged()
        st = status(cut.endpoint)
        assert st is not None
        assert st.leader in {m.id for m in c.members}
        assert get(cut.endpoint, "/part/k") == "after"
    finally:
        c.stop()
