"""The key index: every retained version of every key, ordered by key then revision.

Theory of operation
-------------------
The store is a sequence of revisions. Revision 1 is the empty store; each write that changes
something creates the next revision, made of one or more *changes* (a put or a tombstone per
key, at most one per key per revision). A change is a :class:`KeyVersion`: the KeyValue fields
plus ``kvf``, the KeyValue already encoded as protobuf field 2 (``0x12 <len> <KeyValue>``).
Responses are built by concatenating those bytes; nothing on the read path re-encodes a value.

Two ordered structures index the versions (both from sortedcontainers, both keyed by the raw
key bytes, compared bytewise like etcd):

* ``hist``: key -> list of that key's retained versions in increasing ``mod_revision``. A
  generation starts with a put with version 1 and ends with a tombstone (``version == 0``).
  Normally a key changes at most once per revision, but etcd lets one txn put a key and then
  delete it with a range ending in ``\x00`` (its duplicate-key check reads that range
  literally), so two consecutive versions may share a revision; the later one wins.
  Reading a key at revision R is a bisect for the last version with ``mod_revision <= R``; a
  tombstone (or nothing) there means "absent at R".
* ``live``: key -> latest version, only for keys that exist at the current revision. Reads at
  the current revision (the common case) use it directly: a Range with a limit costs
  O(log n + limit) and ``count`` is two bisects, whatever the number of deleted keys or old
  versions.

Compaction at C (driven by the store, which knows which keys changed since the previous
compaction) keeps, for each key, the newest version with ``mod_revision <= C`` unless it is a
tombstone older than C, plus everything newer; the state at every revision >= C is therefore
unchanged, and so are the events of every revision >= C (a watch may start at C). A tombstone
exactly at C is kept for that reason (etcd fixed the same event loss in 3.5.15) and goes at
the next compaction.

Invariants (checked by :meth:`KeyIndex._check`): every history list is non-empty, strictly
non-decreasing in ``mod_revision``, holds only its own key, and is a proper sequence of
generations (version 1, 2, ... sharing one create_revision, then optionally a tombstone);
``live`` holds exactly the keys whose latest version is not a tombstone, mapped to it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from itertools import islice
from operator import attrgetter

from sortedcontainers import SortedDict

from .kvencoding import encode_kv, kv_field, kv_field_value

__all__ = ["KeyIndex", "KeyVersion"]

_MOD = attrgetter("mod_revision")


class KeyVersion:
    """One stored version of a key: a put, or a tombstone when ``version == 0``.

    Attributes:
        key, create_revision, mod_revision, version, value, lease: the KeyValue fields (a
            tombstone has only ``key`` and ``mod_revision`` = the deletion revision).
        kvf: the encoded KeyValue as protobuf field 2 (``0x12 <len> <KeyValue>``), the exact
            bytes of RangeResponse.kvs, PutResponse.prev_kv and Event.kv entries.

    The value is kept only inside ``kvf`` and read back from it on demand (a value Compare,
    ``ignore_value``, a snapshot): storing it twice cost 29 MB of RSS at 100,000 keys of 256
    bytes, measured.
    """

    __slots__ = (
        "_keys_only",
        "create_revision",
        "key",
        "kvf",
        "lease",
        "mod_revision",
        "version",
    )

    def __init__(
        self, key: bytes, create: int, mod: int, version: int, value: bytes, lease: int
    ) -> None:
        self.key = key
        self.create_revision = create
        self.mod_revision = mod
        self.version = version
        self.lease = lease
        self.kvf = kv_field(encode_kv(key, create, mod, version, value, lease))
        self._keys_only: bytes | None = None

    @classmethod
    def tombstone(cls, key: bytes, mod: int) -> KeyVersion:
        """The deletion of ``key`` at revision ``mod``."""
        return cls(key, 0, mod, 0, b"", 0)

    @property
    def is_tombstone(self) -> bool:
        """True for a deletion."""
        return self.version == 0

    @property
    def value(self) -> bytes:
        """The value (read from ``kvf``)."""
        return kv_field_value(self.kvf)

    @property
    def keys_only_kvf(self) -> bytes:
        """Like ``kvf`` but without the value (keys_only ranges); computed once, on demand."""
        if self._keys_only is None:
            if not self.value:
                self._keys_only = self.kvf
            else:
                self._keys_only = kv_field(
                    encode_kv(
                        self.key,
                        self.create_revision,
                        self.mod_revision,
                        self.version,
                        b"",
                        self.lease,
                    )
                )
        return self._keys_only

    def __repr__(self) -> str:
        return (
            f"KeyVersion({self.key!r}, create={self.create_revision}, mod={self.mod_revision},"
            f" version={self.version}, value={self.value!r}, lease={self.lease})"
        )


def _irange(d: SortedDict, key: bytes, end: bytes | None) -> Iterator[bytes]:
    """Keys of ``d`` in [key, end): ``end`` None = just key, b"" = no upper bound."""
    if end is None:
        return iter((key,)) if key in d else iter(())
    if end == b"":
        return d.irange(minimum=key)  # type: ignore[no-any-return]
    if end <= key:
        return iter(())
    return d.irange(key, end, inclusive=(True, False))  # type: ignore[no-any-return]


class KeyIndex:
    """Ordered index of all retained key versions (see the module docstring)."""

    def __init__(self) -> None:
        self.hist: SortedDict = SortedDict()  # bytes -> list[KeyVersion]
        self.live: SortedDict = SortedDict()  # bytes -> KeyVersion (latest, not a tombstone)

    def add(self, v: KeyVersion) -> None:
        """Append ``v`` (newer than every version of its key) and update ``live``."""
        versions = self.hist.get(v.key)
        if versions is None:
            self.hist[v.key] = [v]
        else:
            versions.append(v)
        if v.version:
            self.live[v.key] = v
        else:
            self.live.pop(v.key, None)

    def at(self, key: bytes, rev: int) -> KeyVersion | None:
        """The version of ``key`` visible at ``rev`` (None if absent then)."""
        versions = self.hist.get(key)
        if not versions:
            return None
        v = versions[-1]
        if v.mod_revision > rev:
            i = bisect_right(versions, rev, key=_MOD) - 1
            if i < 0:
                return None
            v = versions[i]
        return v if v.version else None

    def iter_live(self, key: bytes, end: bytes | None, limit: int = 0) -> Iterator[KeyVersion]:
        """Live versions in [key, end) in key order, at most ``limit`` (0 = all)."""
        live = self.live
        if end is None:
            v = live.get(key)
            return iter((v,)) if v is not None else iter(())
        keys = _irange(live, key, end)
        if limit > 0:
            keys = islice(keys, limit)
        return (live[k] for k in keys)

    def count_live(self, key: bytes, end: bytes | None) -> int:
        """Number of live keys in [key, end)."""
        live = self.live
        if end is None:
            return 1 if key in live else 0
        lo: int = live.bisect_left(key)
        hi: int = len(live) if end == b"" else live.bisect_left(end)
        return max(0, hi - lo)

    def iter_at(self, key: bytes, end: bytes | None, rev: int) -> Iterator[KeyVersion]:
        """Versions visible at ``rev`` for keys in [key, end), in key order."""
        at = self.at
        for k in _irange(self.hist, key, end):
            v = at(k, rev)
            if v is not None:
                yield v

    def compact_key(self, key: bytes, rev: int) -> list[KeyVersion]:
        """Drop the versions of ``key`` made obsolete by compaction at ``rev``; return them."""
        versions: list[KeyVersion] | None = self.hist.get(key)
        if not versions:
            return []
        i = bisect_right(versions, rev, key=_MOD) - 1
        if i < 0:
            return []
        newest = versions[i]
        if newest.version == 0 and newest.mod_revision < rev:
            i += 1  # a tombstone below the compaction revision goes too
        else:
            # keep the newest version <= rev (a tombstone exactly at rev stays, so a watch
            # from rev still sees that delete, as etcd >= 3.5.15 does), with any earlier
            # change of the key in the same revision
            while i > 0 and versions[i - 1].mod_revision == newest.mod_revision:
                i -= 1
        if i == 0:
            return []
        removed = versions[:i]
        if i == len(versions):
            del self.hist[key]
        else:
            del versions[:i]
        return removed

    def _check(self, compact_rev: int = 0) -> None:
        """Assert the invariants of the module docstring (and compaction's, at compact_rev)."""
        live_expected = {}
        for key, versions in self.hist.items():
            assert versions, key
            prev: KeyVersion | None = None
            below: set[int] = set()
            for v in versions:
                assert v.key == key
                assert v.mod_revision > 0
                if v.mod_revision <= compact_rev:
                    below.add(v.mod_revision)
                    if v.version == 0:
                        assert v.mod_revision == compact_rev, ("tombstone below compaction", v)
                if prev is not None:
                    # equal only for a put and a delete of the key in one txn (etcd allows a
                    # put plus a delete range ending in "\x00" over it)
                    assert v.mod_revision >= prev.mod_revision, (prev, v)
                if v.version:
                    if prev is None or prev.version == 0:
                        # start of a generation (or first retained version after compaction)
                        if prev is not None:
                            assert v.version == 1, v
                            assert v.create_revision == v.mod_revision, v
                    else:
                        assert v.version == prev.version + 1, (prev, v)
                        assert v.create_revision == prev.create_revision, (prev, v)
                    assert v.create_revision <= v.mod_revision
                    if v.version == 1:
                        assert v.create_revision == v.mod_revision, v
                else:
                    assert v.create_revision == 0
                    assert v.lease == 0
                    assert v.value == b""
                prev = v
            assert len(below) <= 1, (key, versions)
            if versions[-1].version:
                live_expected[key] = versions[-1]
        assert len(live_expected) == len(self.live)
        for key, v in self.live.items():
            assert live_expected.get(key) is v, key
