"""The store's snapshot format: msgpack of ``(format, rev, compact, log)``.

``log`` is the retained history, revisions ascending, each with its changes in execution
order as ``(key, create_revision, version, value, lease)`` (version 0: a delete).
:meth:`~.store.KVStore.snapshot` writes it from a live store; the etcd backend reader
(``coord.server.backup.etcddb``) writes it straight from an etcd db, without building a store.
"""

from __future__ import annotations

import msgspec

__all__ = ["SNAPSHOT_FORMAT", "SnapshotChange", "encode_snapshot"]

SNAPSHOT_FORMAT = 1
#: one change: (key, create_revision, version, value, lease); version 0 = a delete
SnapshotChange = tuple[bytes, int, int, bytes, int]


def encode_snapshot(rev: int, compact: int, log: list[tuple[int, list[SnapshotChange]]]) -> bytes:
    """Snapshot bytes of a store at ``rev``, compacted at ``compact``, holding ``log``."""
    return msgspec.msgpack.encode((SNAPSHOT_FORMAT, rev, compact, log))
