"""Learners: Status reports isLearner; promotion needs a learner in sync with the leader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, Member, get, put, status
from support import etcdctl, wait_for

pytestmark = pytest.mark.etcdctl


def add_learner(c: Cluster, tmp_path: Path) -> tuple[Member, str]:
    """``member add --learner`` (not started); returns the member and its ETCD_INITIAL_CLUSTER."""
    new = Member("l1", tmp_path)
    new.proxy_port = new.peer_port
    c.members.append(new)
    out = etcdctl(
        c.members[0].endpoint, "member", "add", "l1", "--learner", f"--peer-urls={new.peer_url}"
    ).stdout
    added = re.search(r"Member +([0-9a-f]+) added", out)
    initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', out)
    assert added is not None
    assert initial is not None
    new.id = int(added.group(1), 16)
    return new, initial.group(1)


def test_status_reports_learner(tmp_path: Path) -> None:
    c = Cluster(tmp_path, size=1).start()
    try:
        ep = c.members[0].endpoint
        put(ep, "/ln/k", "v")
        new, initial = add_learner(c, tmp_path)
        c.start_member(new, state="existing", initial_cluster=initial, wait=False)
        wait_for(
            lambda: (
                status(new.endpoint) is not None
                and get(new.endpoint, "/ln/k", serializable=True) == "v"
            ),
            timeout=30,
            what="the learner to catch up",
        )
        st, lead = status(new.endpoint), status(ep)
        assert st is not None
        assert lead is not None
        assert st.is_learner
        assert not lead.is_learner
        etcdctl(ep, "member", "promote", f"{new.id:x}")
        wait_for(
            lambda: (s := status(new.endpoint)) is not None and not s.is_learner,
            timeout=10,
            what="the promoted member to report isLearner false",
        )
    finally:
        c.stop()


def test_promote_refuses_learner_not_in_sync(tmp_path: Path) -> None:
    c = Cluster(tmp_path, size=2).start()
    try:
        leader = c.wait_leader()
        follower = next(m for m in c.members if m is not leader)
        for i in range(20):
            put(leader.endpoint, f"/ns/{i}", "v")
        new, _ = add_learner(c, tmp_path)  # added, never started: match index 0
        for m in (leader, follower):  # the follower forwards the check to the leader
            out = etcdctl(m.endpoint, "member", "promote", f"{new.id:x}", check=False)
            assert out.returncode != 0
            assert "can only promote a learner member which is in sync with leader" in out.stderr
        learners = [m for m in c.members[:2] if (s := status(m.endpoint)) and s.is_learner]
        assert learners == []
        listed = etcdctl(leader.endpoint, "member", "list").stdout
        assert re.search(rf"{new.id:x}, unstarted, , {re.escape(new.peer_url)}, , true", listed), (
            listed
        )
        put(leader.endpoint, "/ns/after", "still a quorum")  # 2 voters, both up
    finally:
        c.stop()
