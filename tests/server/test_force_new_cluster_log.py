"""--force-new-cluster's rewrite of a member's log, on a real DurableStorage (WAL on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coord.server.force_new_cluster import (
    ForceNewClusterError,
    effective_member_ids,
    force_new_cluster,
)
from coord.server.membership import Member, decode_context
from coord.server.raft.confchange_codec import decode_conf_change, encode_conf_change
from coord.server.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMetadata,
)
from coord.server.storage import DurableStorage

MD = {"member_id": 2, "cluster_id": 9}


def conf(index: int, term: int, typ: ConfChangeType, node: int) -> Entry:
    return Entry(
        term=term,
        index=index,
        type=EntryType.CONF_CHANGE,
        data=encode_conf_change(ConfChange(typ, node)),
    )


def normal(index: int, term: int) -> Entry:
    return Entry(term=term, index=index, data=b"x")


def changes(st: DurableStorage, lo: int, hi: int) -> list[tuple[ConfChangeType, int]]:
    out = []
    for e in st.entries(lo, hi + 1):
        assert e.type == EntryType.CONF_CHANGE
        cc = decode_conf_change(e.data)
        assert isinstance(cc, ConfChange)
        out.append((cc.type, cc.node_id))
    return out


def test_uncommitted_entries_are_replaced_by_removals_of_every_other_member(tmp_path: Path) -> None:
    st = DurableStorage.create(tmp_path, MD)
    add, learner = ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE
    st.save(
        HardState(term=3, vote=2, commit=5),
        [
            conf(1, 1, add, 1),
            conf(2, 1, add, 2),
            conf(3, 1, add, 3),
            normal(4, 2),
            conf(5, 2, learner, 4),
            normal(6, 3),
            conf(7, 3, ConfChangeType.REMOVE_NODE, 3),
        ],
    )
    force_new_cluster(st, Member(id=2, name="m2", peer_urls=["http://127.0.0.1:1"]))
    st.close()
    st = DurableStorage.open(tmp_path)  # what a restart (with or without the flag) sees
    try:
        assert st.initial_state()[0] == HardState(term=3, vote=2, commit=8)
        assert st.last_index() == 8  # entries 6 and 7 (uncommitted) are gone
        assert [e.term for e in st.entries(1, 9)] == [1, 1, 1, 2, 2, 3, 3, 3]
        assert changes(st, 6, 8) == [
            (ConfChangeType.REMOVE_NODE, 1),
            (ConfChangeType.REMOVE_NODE, 3),
            (ConfChangeType.REMOVE_NODE, 4),
        ]
    finally:
        st.close()


def test_a_member_missing_from_its_configuration_adds_itself_first(tmp_path: Path) -> None:
    st = DurableStorage.create(tmp_path, MD)
    snap = Snapshot(b"", SnapshotMetadata(ConfState(voters=[1, 3], learners=[5]), index=10, term=4))
    st.save(HardState(term=4, vote=0, commit=10), [], snap)
    me = Member(id=2, name="m2", peer_urls=["http://127.0.0.1:1"])
    force_new_cluster(st, me)
    try:
        assert st.initial_state()[0].commit == 14
        assert changes(st, 11, 14) == [
            (ConfChangeType.ADD_NODE, 2),
            (ConfChangeType.REMOVE_NODE, 1),
            (ConfChangeType.REMOVE_NODE, 3),
            (ConfChangeType.REMOVE_NODE, 5),
        ]
        first = decode_conf_change(st.entries(11, 12)[0].data)
        assert isinstance(first, ConfChange)
        assert decode_context(first.context).member == me
    finally:
        st.close()


def test_effective_member_ids_follow_snapshot_and_conf_changes() -> None:
    snap = Snapshot(b"", SnapshotMetadata(ConfState(voters=[1, 2], learners=[3]), index=5, term=1))
    ents = [
        conf(6, 1, ConfChangeType.REMOVE_NODE, 1),
        normal(7, 1),
        conf(8, 1, ConfChangeType.ADD_NODE, 9),
        conf(9, 1, ConfChangeType.UPDATE_NODE, 2),
    ]
    assert effective_member_ids(snap, ents) == [2, 3, 9]


def test_a_learner_refuses_and_writes_nothing(tmp_path: Path) -> None:
    st = DurableStorage.create(tmp_path, MD)
    add = ConfChangeType.ADD_NODE
    st.save(
        HardState(term=1, vote=0, commit=3),
        [conf(1, 1, add, 1), conf(2, 1, add, 3), conf(3, 1, ConfChangeType.ADD_LEARNER_NODE, 2)],
    )
    with pytest.raises(ForceNewClusterError, match="member 2 is a learner"):
        force_new_cluster(st, Member(id=2))
    st.close()
    st = DurableStorage.open(tmp_path)
    try:
        assert st.last_index() == 3
        assert st.initial_state()[0] == HardState(term=1, vote=0, commit=3)
    finally:
        st.close()
