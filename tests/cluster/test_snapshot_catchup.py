"""A follower that was down while the others compacted their logs catches up via a snapshot."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, Member, get_prefix, put, run, status, write_load
from support import etcdctl, wait_for

from coord.server.storage import snapfile


def test_stopped_follower_catches_up_through_snapshot(tmp_path: Path) -> None:
    c = Cluster(tmp_path, snapshot_count=40).start()
    try:
        leader = c.wait_leader()
        follower = next(m for m in c.members if m is not leader)
        assert follower.proc is not None
        follower.proc.stop()
        follower.proc = None
        live = [m.endpoint for m in c.running()]
        acked = run(write_load(live, "/snap/", 150, concurrency=4))
        assert len(acked) == 300
        # the others snapshotted and compacted well past where the follower stopped
        st = status(leader.endpoint)
        assert st is not None
        assert st.raft_applied_index > 300
        lead_snaps = snapfile.list_snapshots(tmp_path / f"{leader.name}.coord" / "member" / "snap")
        assert lead_snaps
        assert lead_snaps[-1][0] > 200
        c.start_member(follower)
        wait_for(
            lambda: (
                "applied snapshot at index" in (follower.proc.output() if follower.proc else "")
            ),
            timeout=20,
            what="the follower to receive a snapshot",
        )
        c.wait_converged()
        assert get_prefix(follower.endpoint, "/snap/") == acked
    finally:
        c.stop()


# -- members added after compaction (issue 12, bug 2) ------------------------------------------


def _member_add(c: Cluster, member: Member, learner: bool) -> str:
    """``etcdctl member add`` (not started); sets ``member.id``, returns ETCD_INITIAL_CLUSTER."""
    out = etcdctl(
        c.running()[0].endpoint,
        "member",
        "add",
        member.name,
        *(["--learner"] if learner else []),
        f"--peer-urls={member.peer_url}",
    ).stdout
    added = re.search(r"Member +([0-9a-f]+) added", out)
    initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', out)
    assert added is not None, out
    assert initial is not None, out
    member.id = int(added.group(1), 16)
    return initial.group(1)


def _wait_has_all(member: Member, acked: dict[str, str], what: str) -> None:
    def caught_up() -> bool:
        try:
            return get_prefix(member.endpoint, "/late/", serializable=True) == acked
        except Exception:
            return False

    wait_for(caught_up, timeout=30, interval=0.2, what=what)


def _snapshots_received(member: Member) -> int:
    return (member.proc.output() if member.proc else "").count("applied snapshot at index")


@pytest.mark.etcdctl
def test_learner_added_after_compaction_catches_up(tmp_path: Path) -> None:
    """The leader's stored snapshot predates the learner; what it sends must carry the current
    configuration (etcd's createMergedSnapshotMessage), so the learner accepts it, catches up
    from one snapshot, and can be promoted."""
    c = Cluster(tmp_path, snapshot_count=100).start()
    try:
        leader = c.wait_leader()
        acked = run(write_load([leader.endpoint], "/late/", 230, concurrency=4))
        assert len(acked) == 230
        new = Member("l1", tmp_path)
        new.proxy_port = new.peer_port
        c.members.append(new)
        initial = _member_add(c, new, learner=True)
        c.start_member(new, state="existing", initial_cluster=initial, wait=False)
        _wait_has_all(new, acked, "the learner to catch up through a snapshot")
        # one snapshot, not a stream of refused ones (before the fix: ~30 a second, forever)
        assert _snapshots_received(new) == 1, new.proc.output() if new.proc else ""
        sent = sum(
            m.proc.output().count("sent snapshot at index")
            for m in c.members[:3]
            if m.proc is not None
        )
        assert sent == 1, sent
        # the member list restored from the snapshot agrees with its configuration
        listed = etcdctl(new.endpoint, "member", "list").stdout.splitlines()
        assert len(listed) == 4, listed
        assert sum(line.endswith(", true") for line in listed) == 1, listed
        assert f"{new.id:x}, started, l1, {new.peer_url}, http://{new.endpoint}, true" in listed, (
            listed
        )
        etcdctl(leader.endpoint, "member", "promote", f"{new.id:x}")
        wait_for(
            lambda: (s := status(new.endpoint)) is not None and not s.is_learner,
            timeout=10,
            what="the promoted member to report isLearner false",
        )
        put(new.endpoint, "/late/after-promote", "v")
        c.wait_converged()
    finally:
        c.stop()


@pytest.mark.etcdctl
def test_remove_wipe_readd_recovers_member(tmp_path: Path) -> None:
    """docs/cluster.md's recovery procedure for a broken member: remove it, wipe its data
    directory, add it again; it restarts with --initial-cluster-state existing and catches up
    through a snapshot (the log was compacted) taken before it was re-added."""
    c = Cluster(tmp_path, snapshot_count=100).start()
    try:
        leader = c.wait_leader()
        broken = next(m for m in c.members if m is not leader)
        acked = run(write_load([leader.endpoint], "/late/", 230, concurrency=4))
        assert len(acked) == 230
        c.kill(broken)
        old_id = broken.id
        etcdctl(leader.endpoint, "member", "remove", f"{old_id:x}")
        shutil.rmtree(tmp_path / f"{broken.name}.coord")
        initial = _member_add(c, broken, learner=False)
        assert broken.id != old_id
        c.start_member(broken, state="existing", initial_cluster=initial, wait=False)
        _wait_has_all(broken, acked, "the re-added member to catch up through a snapshot")
        members = etcdctl(leader.endpoint, "member", "list").stdout
        assert f"{old_id:x}" not in members
        assert f"{broken.id:x}, started, {broken.name}" in members, members
        put(broken.endpoint, "/late/after-readd", "v")  # a voter again: the write commits
        c.wait_converged()
    finally:
        c.stop()
