"""Three real members: leader kill -9 under concurrent writes, re-election, catch-up, HashKV."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, get_prefix, run, status, write_load
from support import ELECTION_MS, wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path).start()
    yield c
    c.stop()


def test_three_members_agree_on_leader_and_members(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    for m in cluster.members:
        st = status(m.endpoint)
        assert st is not None
        assert st.leader == leader.id
        assert st.raft_term >= 2
        assert st.raft_index >= st.raft_applied_index > 0


def test_kill_leader_under_load(cluster: Cluster) -> None:
    prefix = "/failover/"
    eps = [m.endpoint for m in cluster.members]
    leader = cluster.wait_leader()
    acked: dict[str, str] = {}
    done = threading.Event()

    def load() -> None:
        acked.update(run(write_load(eps, prefix, 150, concurrency=3, timeout=2.0)))
        done.set()

    t = threading.Thread(target=load)
    t.start()
    wait_for(
        lambda: len(get_prefix(eps[0], prefix, serializable=True)) > 30,
        timeout=20,
        what="some writes",
    )
    cluster.kill(leader)
    t_kill = time.monotonic()
    survivors = cluster.running()
    new = cluster.wait_leader(survivors, timeout=10)
    took = time.monotonic() - t_kill
    assert new is not leader
    print(f"new leader after {took:.2f}s")
    # 3 election timeouts, plus 0.5 s for detecting it through Status calls
    assert took < 3 * ELECTION_MS / 1000 + 0.5, f"new leader after {took:.2f}s"
    t.join(120)
    assert done.is_set()
    assert len(acked) > 100
    for m in survivors:
        got = get_prefix(m.endpoint, prefix)
        missing = {k for k in acked if got.get(k) != acked[k]}
        assert not missing, f"{m.name} lost {len(missing)} acknowledged writes"
    # the killed member restarts and catches up: same HashKV at the same revision everywhere
    cluster.start_member(leader, wait=True)
    cluster.wait_converged(cluster.members)
    got = get_prefix(leader.endpoint, prefix)
    assert all(got.get(k) == v for k, v in acked.items())
