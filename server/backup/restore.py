"""A member's data directory from a snapshot file, and a member's state from its directory.

Theory of operation
-------------------
:func:`restore` is ``etcdctl snapshot restore`` (etcd v3.4.23 ``clientv3/snapshot/
v3_snapshot.go`` ``Restore``; 3.5's ``etcdutl``). It reads the whole snapshot first (trailer,
bbolt pages, every bucket: :func:`.snapshotfile.open_snapshot`, :func:`.etcddb.read_backend`),
so a damaged file is refused before anything is written. The new cluster's members are those
of ``--initial-cluster`` with IDs derived as at any bootstrap (the snapshot's own member list
is dropped, as etcd does); the member directory then holds one Raft snapshot at index N = the
number of members, term 1, whose ConfState and member list name them and whose state is the
snapshot's (applied index N), and a WAL that starts at it with commit N. etcd writes N
conf-change entries before its snapshot at N; here the snapshot alone carries the
configuration, which is all a restart reads. Every member restored from the same file with
the same flags gets the same bytes, so the members agree from their first start
(``etcdctl endpoint hashkv``). The directory is created atomically
(:meth:`DurableStorage.create`); an existing non-empty data directory is refused.

:func:`load_member` reads a stopped member's directory (locked, so a running member is
refused) the way a restart does: the newest snapshot, then the committed entries after it,
applied by the same state machine (conf changes update the member list). That is the state
``coord-server snapshot save --data-dir`` writes, as etcdutl's offline backup does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from coord.server.config import parse_initial_cluster
from coord.server.membership import (
    Membership,
    bootstrap_members,
    compute_member_id,
    decode_attributes,
)
from coord.server.node.proposals import ENVELOPE, TAG_ATTRIBUTES, TAG_COMMAND
from coord.server.node.snapshots import SnapshotData
from coord.server.raft.confchange_codec import decode_conf_change
from coord.server.raft.types import (
    ConfChangeV2,
    ConfState,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMetadata,
)
from coord.server.statemachine import StateMachine
from coord.server.storage import DurableStorage, StorageError
from coord.server.storage.fileutil import lock_data_dir

from . import etcddb, snapshotfile

__all__ = ["Restored", "RestoreError", "load_member", "restore"]

Progress = Callable[[int], None]


class RestoreError(ValueError):
    """The restore cannot be done with these arguments (the message says why)."""


@dataclass(frozen=True)
class Restored:
    """What :func:`restore` built."""

    member_id: int
    cluster_id: int
    revision: int
    keys: int


def restore(
    path: str | os.PathLike[str],
    data_dir: Path,
    name: str,
    initial_cluster: str,
    initial_advertise_peer_urls: Sequence[str],
    initial_cluster_token: str = "etcd-cluster",
    skip_hash_check: bool = False,
    progress: Progress | None = None,
    key_progress: Progress | None = None,
) -> Restored:
    """Build ``data_dir`` for member ``name`` from the snapshot file ``path``; ``progress``
    hears the bytes hashed, ``key_progress`` the history entries read.

    Raises:
        RestoreError: ``data_dir`` is not empty, or the flags do not name this member.
        snapshotfile.SnapshotFileError, bbolt.BoltError, etcddb.SnapshotFormatError: the
            file is not a usable snapshot (nothing is written).
    """
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise RestoreError(f'data-dir "{data_dir}" exists and is not empty')
    try:
        initial = parse_initial_cluster(initial_cluster)
        members = bootstrap_members(initial, initial_cluster_token)
    except ValueError as e:
        raise RestoreError(f"--initial-cluster: {e}") from None
    member_id = compute_member_id(list(initial_advertise_peer_urls), initial_cluster_token)
    me = next((m for m in members if m.id == member_id), None)
    if me is None or me.name != name:
        raise RestoreError(
            f"--initial-cluster has no member {name!r} with peer URLs "
            f"{list(initial_advertise_peer_urls)} (--name, --initial-advertise-peer-urls)"
        )
    with snapshotfile.open_snapshot(path, skip_hash_check, progress) as db:
        backend = etcddb.read_backend(db, key_progress)
    n = len(members)
    membership = Membership.bootstrap(members)
    revision, keys = backend.revision, backend.keys
    state = backend.state(n)
    del backend  # each step drops the copy it was made from
    data = msgspec.msgpack.encode(SnapshotData(state, membership.document(), n))
    del state
    snap = Snapshot(
        data=data,
        metadata=SnapshotMetadata(
            conf_state=ConfState(voters=sorted(m.id for m in members)), index=n, term=1
        ),
    )
    lock = lock_data_dir(data_dir)
    try:
        DurableStorage.create(
            data_dir,
            {"member_id": member_id, "cluster_id": membership.cluster_id},
            HardState(term=1, vote=0, commit=n),
            snapshot=snap,
        ).close()
    finally:
        lock.release()
    return Restored(member_id, membership.cluster_id, revision, keys)


def load_member(data_dir: Path) -> tuple[StateMachine, Membership]:
    """The applied state of the stopped member in ``data_dir`` (see the module docstring).

    Raises:
        StorageError: no member data there, the member is running, or its files are damaged.
    """
    if not DurableStorage.exists(data_dir):
        raise StorageError(f"{data_dir}: no member data (member/wal, member/snap)")
    lock = lock_data_dir(data_dir)
    try:
        storage = DurableStorage.open(data_dir)
        try:
            sm = StateMachine()
            membership = Membership(storage.metadata["cluster_id"])
            snap = storage.snapshot()
            applied = snap.metadata.index
            if not snap.is_empty():
                data = msgspec.msgpack.decode(snap.data, type=SnapshotData)
                sm.restore(data.sm)
                membership.restore(data.membership)
            hard_state, _ = storage.initial_state()
            for e in storage.entries(applied + 1, hard_state.commit + 1):
                if e.type == EntryType.CONF_CHANGE:
                    cc = decode_conf_change(e.data)
                    for c in cc.changes if isinstance(cc, ConfChangeV2) else [cc]:
                        membership.apply(c)
                elif e.data:
                    tag = ENVELOPE.unpack_from(e.data)[0]
                    payload = e.data[ENVELOPE.size :]
                    if tag == TAG_COMMAND:
                        sm.apply(e.index, payload)
                    elif tag == TAG_ATTRIBUTES:
                        membership.apply_attributes(decode_attributes(payload))
                sm.applied_index = e.index
        finally:
            storage.close()
    finally:
        lock.release()
    return sm, membership
