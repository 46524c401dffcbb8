"""--force-new-cluster: disaster recovery of a cluster that lost its quorum for good."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, Member, get_prefix, put, run, status, write_load
from support import CoordProc, etcdctl, wait_for

from coord import Client

pytestmark = pytest.mark.etcdctl


def member_ids(endpoint: str) -> list[int]:
    with Client(endpoint) as c:
        return sorted(m.id for m in c.members())


def leads_itself(m: Member) -> bool:
    st = status(m.endpoint)
    return st is not None and int(st.leader) == m.id


def start_forced(c: Cluster, m: Member) -> None:
    m.proc = CoordProc(
        c.base,
        name=m.name,
        args=[*c.args(m), "--force-new-cluster"],
        client_port=m.client_port,
        wait=False,
    )
    c.wait_member(m)


def test_force_new_cluster_restores_a_one_member_cluster_from_a_survivor(tmp_path: Path) -> None:
    # snapshot-count 50: the survivor recovers from a snapshot plus the log after it
    c = Cluster(tmp_path, 3, snapshot_count=50).start()
    try:
        leader = c.wait_leader()
        acked = run(write_load([m.endpoint for m in c.members], "/fnc/", 60, concurrency=4))
        assert len(acked) == 180
        with Client(leader.endpoint) as cl:
            lease = cl.lease(600)
            cl.put("/fnc/leased", "with-lease", lease=lease)
            lease_id = lease.id
        c.wait_converged()
        old_ids = sorted(m.id for m in c.members)
        survivor = next(m for m in c.members if m is not leader)
        others = [m for m in c.members if m is not survivor]
        for m in others:
            c.kill(m)  # kill -9
        assert survivor.proc is not None
        survivor.proc.stop()  # SIGTERM
        survivor.proc = None

        start_forced(c, survivor)
        wait_for(lambda: leads_itself(survivor), timeout=15, what="the survivor to lead itself")
        assert member_ids(survivor.endpoint) == [survivor.id]
        listed = etcdctl(survivor.endpoint, "member", "list").stdout.strip().splitlines()
        assert len(listed) == 1
        assert listed[0].startswith(f"{survivor.id:x}, started, {survivor.name}, ")
        got = get_prefix(survivor.endpoint, "/fnc/")
        for key, value in acked.items():
            assert got.get(key) == value, key
        assert got["/fnc/leased"] == "with-lease"
        with Client(survivor.endpoint) as cl:
            ttl = cl.lease_time_to_live(lease_id, keys=True)
            assert ttl.ttl > 0
            assert ttl.keys == (b"/fnc/leased",)
        put(survivor.endpoint, "/fnc/after", "1")
        assert survivor.proc is not None
        log = survivor.proc.output()
        removed = ",".join(f"{i:x}" for i in old_ids if i != survivor.id)
        assert (
            f"--force-new-cluster: member {survivor.id:x} now forms a one-member cluster: "
            f"removed members {removed}"
        ) in log

        # A restart without the flag stays a one-member cluster.
        logged = len(log)
        survivor.proc.stop()
        survivor.proc = None
        c.start_member(survivor)
        wait_for(lambda: leads_itself(survivor), timeout=15, what="the restarted member to lead")
        assert member_ids(survivor.endpoint) == [survivor.id]
        got = get_prefix(survivor.endpoint, "/fnc/")
        assert got["/fnc/after"] == "1"
        assert len(got) == len(acked) + 2
        put(survivor.endpoint, "/fnc/after2", "2")
        assert survivor.proc is not None
        assert "--force-new-cluster" not in survivor.proc.output()[logged:]

        # An old member restarted with its old data is refused (it was removed) and stops.
        old = others[0]
        c.start_member(old, wait=False)
        assert old.proc is not None
        wait_for(
            lambda: old.proc is not None and not old.proc.alive(),
            timeout=30,
            what="the removed old member to stop",
        )
        assert member_ids(survivor.endpoint) == [survivor.id]
        assert leads_itself(survivor)
    finally:
        c.stop()


def test_force_new_cluster_on_a_new_data_dir_bootstraps_as_usual(tmp_path: Path) -> None:
    """As etcd: without member data the flag has no effect (a normal bootstrap)."""
    proc = CoordProc(tmp_path, name="fresh", args=["--force-new-cluster"])
    try:
        etcdctl(proc.endpoint, "put", "/fresh/k", "v")
        assert etcdctl(proc.endpoint, "get", "/fresh/k", "--print-value-only").stdout == "v\n"
        assert "--force-new-cluster has no effect" in proc.output()
    finally:
        proc.stop()


def test_force_new_cluster_on_a_lone_member_changes_nothing(tmp_path: Path) -> None:
    proc = CoordProc(tmp_path, name="lone")
    args = proc.argv
    try:
        etcdctl(proc.endpoint, "put", "/lone/k", "v")
    finally:
        proc.stop()
    proc = CoordProc(
        tmp_path,
        name="lone",
        client_port=proc.client_port,
        args=[*args[args.index("--listen-peer-urls") :], "--force-new-cluster"],
    )
    try:
        assert etcdctl(proc.endpoint, "get", "/lone/k", "--print-value-only").stdout == "v\n"
        assert "is already the only member; nothing to change" in proc.output()
    finally:
        proc.stop()
