"""Membership changes with etcdctl: learner add, promote, move-leader, remove follower, leader."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from cluster.clusterlib import Cluster, Member, get, put, status
from support import etcdctl, wait_for
from unwrap import unwrap

from coord.server.membership import compute_cluster_id, compute_member_id

pytestmark = pytest.mark.etcdctl


def member_list(endpoint: str) -> list[dict[str, object]]:
    out = etcdctl(endpoint, "member", "list", "-w", "json").stdout
    return list(json.loads(out)["members"])


def test_ids_are_etcds(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    try:
        from cluster.clusterlib import TOKEN

        ids = sorted(compute_member_id([m.peer_url], TOKEN) for m in c.members)
        assert sorted(m.id for m in c.members) == ids
        st = status(c.members[0].endpoint)
        assert st is not None
        assert unwrap(st.header).cluster_id == compute_cluster_id(ids)
        members = member_list(c.members[1].endpoint)
        assert sorted(str(m["name"]) for m in members) == ["m1", "m2", "m3"]
        wait_for(
            lambda: all(m.get("clientURLs") for m in member_list(c.members[2].endpoint)),
            timeout=10,
            what="published client URLs",
        )
    finally:
        c.stop()


def test_learner_promote_move_leader_remove(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    try:
        ep = c.members[0].endpoint
        put(ep, "/mem/before", "1")
        # -- add a learner and start it ----------------------------------------------------
        new = Member("m4", tmp_path)
        new.proxy_port = new.peer_port
        c.members.append(new)
        out = etcdctl(ep, "member", "add", "m4", "--learner", f"--peer-urls={new.peer_url}").stdout
        assert re.search(r"Member +[0-9a-f]+ added to cluster +[0-9a-f]+", out), out  # %16x
        initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', out)
        assert initial is not None
        assert f"m4={new.peer_url}" in initial.group(1)
        c.start_member(new, state="existing", initial_cluster=initial.group(1), wait=False)
        wait_for(
            lambda: (
                get(new.endpoint, "/mem/before", serializable=True) == "1"
                if status(new.endpoint)
                else False
            ),
            timeout=30,
            what="the learner to catch up",
        )
        st = status(new.endpoint)
        assert st is not None
        new.id = int(unwrap(st.header).member_id)
        learners = [m for m in member_list(ep) if m.get("isLearner")]
        assert [int(str(m["ID"])) for m in learners] == [new.id]
        # -- promote ------------------------------------------------------------------------
        etcdctl(ep, "member", "promote", f"{new.id:x}")
        assert not any(m.get("isLearner") for m in member_list(ep))
        put(new.endpoint, "/mem/after-promote", "2")  # a (forwarded) write from the new voter
        # -- move the leader to the new member ---------------------------------------------
        all_eps = ",".join(m.endpoint for m in c.members)
        etcdctl(all_eps, "move-leader", f"{new.id:x}")
        assert c.wait_leader() is new
        # -- remove a follower: it stops by itself -----------------------------------------
        victim = c.members[1]
        etcdctl(ep, "member", "remove", f"{victim.id:x}")
        assert victim.proc is not None
        wait_for(
            lambda: not victim.proc.alive() if victim.proc else True,
            timeout=15,
            what="the removed member to stop",
        )
        victim.proc.stop()
        victim.proc = None
        assert len(member_list(ep)) == 3
        # -- remove the leader: it steps down and stops; the rest elects a new one --------
        etcdctl(ep, "member", "remove", f"{new.id:x}")
        wait_for(
            lambda: not new.proc.alive() if new.proc else True,
            timeout=15,
            what="the removed leader to stop",
        )
        assert new.proc is not None
        new.proc.stop()
        new.proc = None
        rest = c.running()
        assert len(rest) == 2
        leader = c.wait_leader(rest)
        assert leader in rest
        put(rest[0].endpoint, "/mem/end", "3")
        assert get(rest[1].endpoint, "/mem/end") == "3"
        assert len(member_list(rest[1].endpoint)) == 2
    finally:
        c.stop()


def test_member_update_peer_urls(tmp_path: Path) -> None:
    c = Cluster(tmp_path).start()
    try:
        m2 = c.members[1]
        new_url = f"http://localhost:{m2.peer_port}"  # another name for the same listener
        etcdctl(c.members[0].endpoint, "member", "update", f"{m2.id:x}", f"--peer-urls={new_url}")

        def updated(m: Member) -> bool:
            urls = {int(str(x["ID"])): x["peerURLs"] for x in member_list(m.endpoint)}
            return urls[m2.id] == [new_url]

        for m in c.members:
            wait_for(
                functools.partial(updated, m), timeout=10, what=f"{m.name} to apply the update"
            )
        put(c.members[0].endpoint, "/upd/k", "v")
        wait_for(
            lambda: get(m2.endpoint, "/upd/k", serializable=True) == "v",
            timeout=10,
            what="replication to the updated member",
        )
    finally:
        c.stop()
