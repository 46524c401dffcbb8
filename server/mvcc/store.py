"""KVStore: the revisioned key-value state (skeleton; implementation follows)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from coord._pb.etcdserverpb import DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest

__all__ = ["KVStore", "KeyVersion"]


class KeyVersion:
    """One stored version of a key (a put, or a tombstone when ``version == 0``).

    Attributes:
        key, create_revision, mod_revision, version, lease, value: the KeyValue fields.
        kvf: the encoded KeyValue as protobuf field 2 (``0x12 len KeyValue``), ready to be
            concatenated into RangeResponse.kvs / PutResponse.prev_kv / Event.kv.
    """

    __slots__ = ("create_revision", "key", "kvf", "lease", "mod_revision", "value", "version")


class KVStore:
    """The MVCC store. Methods return encoded response bodies WITHOUT the header (field 1)."""

    lease_exists: Callable[[int], bool]

    @property
    def rev(self) -> int:
        """Current revision (1 on a fresh store)."""
        raise NotImplementedError

    @property
    def compact_rev(self) -> int:
        """Revision of the last compaction (0 if never compacted)."""
        raise NotImplementedError

    def range(self, req: RangeRequest) -> bytes:
        """Encoded RangeResponse body (kvs, more, count)."""
        raise NotImplementedError

    def put(self, req: PutRequest) -> bytes:
        """Apply a Put; encoded PutResponse body (prev_kv)."""
        raise NotImplementedError

    def delete_range(self, req: DeleteRangeRequest) -> bytes:
        """Apply a DeleteRange; encoded DeleteRangeResponse body (deleted, prev_kvs)."""
        raise NotImplementedError

    def txn(self, req: TxnRequest) -> bytes:
        """Apply a Txn in one revision; encoded TxnResponse body (succeeded, responses)."""
        raise NotImplementedError

    def compact(self, revision: int) -> None:
        """Compact history at ``revision`` (physical removal of superseded versions)."""
        raise NotImplementedError

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash, compact_revision, hash_revision) over history up to ``revision`` (0 = now)."""
        raise NotImplementedError

    def hash(self) -> int:
        """crc32 over the whole stored state."""
        raise NotImplementedError

    def db_size(self) -> int:
        """Approximate bytes of live and historical data (for the space quota)."""
        raise NotImplementedError

    def keys_for_lease(self, lease_id: int) -> list[bytes]:
        """Live keys attached to ``lease_id``, sorted."""
        raise NotImplementedError

    def delete_keys(self, keys: list[bytes]) -> None:
        """Delete the live ones of ``keys`` in one revision (no bump if none exist)."""
        raise NotImplementedError

    def snapshot(self) -> bytes:
        """Serialize the whole store (msgspec)."""
        raise NotImplementedError

    @classmethod
    def restore(cls, data: bytes) -> KVStore:
        """Build a store from :meth:`snapshot` bytes."""
        raise NotImplementedError

    def add_listener(self, cb: Callable[[int], None]) -> None:
        """Call ``cb(new_revision)`` after every write that bumps the revision."""
        raise NotImplementedError

    def events(self, from_rev: int, to_rev: int) -> Iterator[tuple[int, list[KeyVersion]]]:
        """(revision, changes) for each revision in [from_rev, to_rev] with changes."""
        raise NotImplementedError

    def get(self, key: bytes, revision: int) -> KeyVersion | None:
        """The live version of ``key`` at ``revision`` (None if absent or compacted away)."""
        raise NotImplementedError
