"""A snapshot's member list and its Raft ConfState describe the same configuration.

Both are replicated by the same conf-change entries; the node refuses a snapshot in which they
disagree (issue 12, bug 2: a snapshot sent with a stale ConfState was refused by the member it
was meant for; the sent snapshot is now one of the current applied state, so both agree).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest
from support import free_port

from coord.server.config import Config
from coord.server.membership import Member, Membership
from coord.server.node import RaftNode, SnapshotData
from coord.server.raft.types import ConfState, Snapshot, SnapshotMetadata
from coord.server.statemachine import StateMachine
from coord.server.storage import DurableStorage, StorageError, snapfile


def _membership(voters: list[int], learners: list[int]) -> Membership:
    ms = Membership(cluster_id=7)
    for i in voters:
        ms.members[i] = Member(id=i)
    for i in learners:
        ms.members[i] = Member(id=i, is_learner=True)
    return ms


def test_conf_state_mismatch() -> None:
    ms = _membership([1, 2, 3], [4])
    assert ms.conf_state_mismatch(ConfState(voters=[1, 2, 3], learners=[4])) == ""
    stale = ms.conf_state_mismatch(ConfState(voters=[1, 2, 3]))
    assert "learners [4]" in stale
    assert "learners []" in stale
    assert ms.conf_state_mismatch(ConfState(voters=[1, 2, 3, 4])) != ""  # 4 is a learner
    assert ms.conf_state_mismatch(ConfState(voters=[1, 2], learners=[4])) != ""


def _write_snapshot(data_dir: Path, ms: Membership, cs: ConfState) -> None:
    st = DurableStorage.create(data_dir, {"member_id": 1, "cluster_id": 7})
    data = msgspec.msgpack.encode(SnapshotData(StateMachine().snapshot(), ms.snapshot(), 10))
    snapfile.save(st.snap_dir, Snapshot(data, SnapshotMetadata(cs, index=10, term=2)))
    st.close()


async def _open_node(data_dir: Path) -> RaftNode:
    peer = f"http://127.0.0.1:{free_port()}"  # the node binds it (never the default 2380)
    return await RaftNode.open(
        Config(data_dir=str(data_dir), listen_peer_urls=(peer,)), StateMachine()
    )


def test_restart_from_consistent_snapshot(tmp_path: Path) -> None:
    _write_snapshot(
        tmp_path, _membership([1, 2, 3], [4]), ConfState(voters=[1, 2, 3], learners=[4])
    )

    async def check() -> None:
        node = await _open_node(tmp_path)
        async with anyio.create_task_group() as tg:
            await tg.start(node.run)  # and stopped, as a server stops it (closing what it holds)
            assert node.applied_index() == 10
            assert sorted(m.id for m in node.members()) == [1, 2, 3, 4]
            tg.cancel_scope.cancel()

    anyio.run(check)


def test_snapshot_whose_members_disagree_with_its_conf_state_is_refused(tmp_path: Path) -> None:
    _write_snapshot(tmp_path, _membership([1, 2, 3], [4]), ConfState(voters=[1, 2, 3]))
    with pytest.raises(StorageError, match="member list disagrees with its Raft configuration"):
        anyio.run(_open_node, tmp_path)
