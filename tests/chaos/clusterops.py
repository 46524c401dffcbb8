"""Cluster operations the nemeses need beyond :mod:`cluster.clusterlib`: membership RPCs,
leader transfer, compaction, health.

Each call goes to one member's client port over a fresh gRPC channel (clusterlib's ``_call``)
and raises on failure; callers retry where the operation is safe to repeat.
"""

from __future__ import annotations

import shutil
import time

from cluster.clusterlib import Cluster, Member, _call, run, status

from coord._pb import etcdserverpb as pb

__all__ = [
    "compact",
    "data_dir",
    "healthy",
    "member_add",
    "member_list",
    "member_promote",
    "member_remove",
    "move_leader",
    "wipe",
]


def member_add(
    endpoint: str, peer_url: str, learner: bool, timeout: float = 10.0
) -> tuple[int, list[pb.Member]]:
    """MemberAdd; returns the new member's ID and the member list it reported."""
    resp = run(
        _call(
            endpoint,
            lambda ch: pb.ClusterStub(ch).member_add(
                pb.MemberAddRequest(peer_ur_ls=[peer_url], is_learner=learner)
            ),
            timeout,
        )
    )
    assert resp.member is not None
    return int(resp.member.id), list(resp.members)


def member_remove(endpoint: str, member_id: int, timeout: float = 10.0) -> None:
    run(
        _call(
            endpoint,
            lambda ch: pb.ClusterStub(ch).member_remove(pb.MemberRemoveRequest(id=member_id)),
            timeout,
        )
    )


def member_promote(endpoint: str, member_id: int, timeout: float = 10.0) -> None:
    run(
        _call(
            endpoint,
            lambda ch: pb.ClusterStub(ch).member_promote(pb.MemberPromoteRequest(id=member_id)),
            timeout,
        )
    )


def member_list(endpoint: str, timeout: float = 5.0) -> list[pb.Member]:
    resp = run(
        _call(endpoint, lambda ch: pb.ClusterStub(ch).member_list(pb.MemberListRequest()), timeout)
    )
    return list(resp.members)


def move_leader(leader_endpoint: str, target_id: int, timeout: float = 10.0) -> None:
    run(
        _call(
            leader_endpoint,
            lambda ch: pb.MaintenanceStub(ch).move_leader(
                pb.MoveLeaderRequest(target_id=target_id)
            ),
            timeout,
        )
    )


def compact(endpoint: str, revision: int, timeout: float = 10.0) -> None:
    run(
        _call(
            endpoint,
            lambda ch: pb.KvStub(ch).compact(pb.CompactionRequest(revision=revision)),
            timeout,
        )
    )


def data_dir(c: Cluster, m: Member) -> str:
    """The member's data directory (as tests/support.py's CoordProc names it)."""
    return str(c.base / f"{m.name}.coord")


def wipe(c: Cluster, m: Member) -> None:
    """Delete a stopped member's data directory."""
    assert m.proc is None, "wipe a stopped member only"
    shutil.rmtree(data_dir(c, m), ignore_errors=True)


def initial_cluster(members: list[pb.Member], new_id: int, new_name: str) -> str:
    """ETCD_INITIAL_CLUSTER for a member just added (as etcdctl member add prints it)."""
    parts: list[str] = []
    for m in members:
        name = new_name if m.id == new_id else m.name
        if not name:
            continue  # another added member that has not started yet (etcdctl skips it too)
        parts.extend(f"{name}={u}" for u in m.peer_ur_ls)
    return ",".join(parts)


def healthy(c: Cluster, timeout: float = 30.0) -> bool:
    """True once every member with a process agrees on a leader and has caught up with it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sts = [status(m.endpoint) for m in c.members if m.proc is not None]
        if sts and all(s is not None for s in sts):
            leads = {s.leader for s in sts if s is not None}
            applied = [s.raft_applied_index for s in sts if s is not None]
            if len(leads) == 1 and 0 not in leads and max(applied) - min(applied) <= 50:
                return True
        time.sleep(0.2)
    return False
