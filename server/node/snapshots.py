"""Snapshots: what a Raft snapshot holds, taking one, installing one, and sending one.

Theory of operation: a snapshot's ``data`` is the state machine, the member list and the
applied index (:class:`SnapshotData`).  Every ``--snapshot-count`` applied entries the node
snapshots its applied state and compacts the log behind it, keeping ``catch_up_entries``
entries for slow followers (:meth:`DurableStorage.snapshot_and_compact`: the in-memory view in
the event loop, the files in a worker thread).  A snapshot received from the leader or
recovered at restart is installed only when its member list and its Raft ConfState name the
same configuration.  A MsgSnap leaves with a snapshot of the current applied state and
configuration, as etcd's ``createMergedSnapshotMessage`` (:meth:`Snapshots._send`).
"""

from __future__ import annotations

import dataclasses
import logging

import msgspec

from coord.server.membership import Membership
from coord.server.raft.types import (
    ConfState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from coord.server.storage import StorageError

from .state import NodeState

__all__ = ["SnapshotData", "Snapshots"]

log = logging.getLogger("coord.server.node")


class SnapshotData(msgspec.Struct, array_like=True):
    """What a Raft snapshot's ``data`` holds."""

    sm: bytes
    membership: bytes
    applied: int


_SNAPDATA = msgspec.msgpack.Decoder(SnapshotData)


class Snapshots(NodeState):
    """Taking, installing and sending snapshots (see the module docstring)."""

    def _restore_snapshot(self, snap: Snapshot) -> None:
        data = _SNAPDATA.decode(snap.data)
        ms = Membership.from_document(data.membership)
        why = ms.conf_state_mismatch(snap.metadata.conf_state)
        if why:
            raise StorageError(
                f"snapshot at index {snap.metadata.index}: its member list "
                f"disagrees with its Raft configuration ({why})"
            )
        self.sm.restore(data.sm)
        self.membership.restore(data.membership)
        self._applied = snap.metadata.index
        self._applied_term = snap.metadata.term
        self._snap_index = snap.metadata.index
        self._conf_state = snap.metadata.conf_state
        if hasattr(self, "transport"):
            self.transport.set_peers(self.membership.peer_urls())

    def _applied_snapshot_data(self) -> bytes:
        """The applied state as a snapshot's data: state machine and member list as of
        ``self._applied``, the index whose configuration ``self._conf_state`` is."""
        return msgspec.msgpack.encode(
            SnapshotData(self.sm.snapshot(), self.membership.snapshot(), self._applied)
        )

    def _send(self, msgs: list[Message]) -> None:
        """Hand a Ready's messages to the transport.

        Raft's MsgSnap carries the *stored* snapshot, whose ConfState and member list may
        predate the recipient (a member added since), which would then refuse it forever.
        As etcd's server does (``createMergedSnapshotMessage``, server/etcdserver/
        snapshot_merge.go, called from ``applyAll``), the snapshot sent is instead one of the
        current applied state, with its index, term and ConfState: a consistent whole, at least
        as new as the stored one, so the follower needs no compacted entry after it.
        """
        current: Snapshot | None = None  # one encoding serves every MsgSnap of this Ready
        for i, m in enumerate(msgs):
            if m.type != MessageType.SNAP:
                continue
            assert m.snapshot is not None
            if current is None:
                cs = self._conf_state
                meta = SnapshotMetadata(
                    conf_state=ConfState(
                        voters=list(cs.voters),
                        learners=list(cs.learners),
                        voters_outgoing=list(cs.voters_outgoing),
                        learners_next=list(cs.learners_next),
                        auto_leave=cs.auto_leave,
                    ),
                    index=self._applied,
                    term=self.rawnode.raft.raft_log.term(self._applied),
                )
                current = Snapshot(self._applied_snapshot_data(), meta)
            assert current.metadata.index >= m.snapshot.metadata.index, (
                current.metadata,
                m.snapshot.metadata,
            )
            msgs[i] = dataclasses.replace(m, snapshot=current)
        if log.isEnabledFor(logging.DEBUG):
            self._log_votes(msgs, sent=True)
        self.transport.send(msgs)

    async def _snapshot(self) -> None:
        index = self._applied
        await self.storage.snapshot_and_compact(
            index, self._conf_state, self._applied_snapshot_data(), self.catch_up_entries
        )
        self._snap_index = index
        log.info("snapshot at index %d; log compacted to %d", index, self.storage.first_index())
