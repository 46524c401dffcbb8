"""The Storage interface Raft reads its stable log from, and an in-memory implementation.

Raft only *reads* from Storage.  The node driver writes to it: it appends ``Ready.entries``,
records ``Ready.hard_state`` and applies ``Ready.snapshot`` (and makes all of that durable)
before calling :meth:`RawNode.advance`.  The durable, WAL-backed implementation lives outside
this package and implements the same :class:`Storage` protocol.

Index conventions (as in etcd-io/raft): the storage holds a (possibly compacted) prefix of the
log.  ``first_index()`` is the first index still available as an entry; ``term(first_index()-1)``
must still be answerable (it is the snapshot's or compaction point's term) so Raft can check the
log-matching property for the next append.  ``entries(lo, hi, max_bytes)`` returns ``[lo, hi)``
and at least one entry even if it alone exceeds ``max_bytes``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from .errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from .types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata

__all__ = ["MemoryStorage", "Storage", "entry_size", "limit_size"]


def entry_size(e: Entry) -> int:
    """Approximate encoded size of an entry, used for byte limits (payload plus a header)."""
    return len(e.data) + 16


def limit_size(ents: list[Entry], max_bytes: int | None) -> list[Entry]:
    """Return the longest prefix of ``ents`` within ``max_bytes`` (always at least one entry)."""
    if max_bytes is None or not ents:
        return ents
    size = entry_size(ents[0])
    for i in range(1, len(ents)):
        size += entry_size(ents[i])
        if size > max_bytes:
            return ents[:i]
    return ents


class Storage(Protocol):
    """Read-only view of the stable Raft state (etcd's ``raft.Storage``)."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """Return the saved hard state and the membership of the latest snapshot.

        Without a snapshot, return the bootstrap membership of the group (the initial
        ``--initial-cluster`` voters); conf changes after it are replayed from the log.
        """
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries in ``[lo, hi)``, limited to ``max_bytes`` (but at least one).

        Raises:
            CompactedError: ``lo`` is before ``first_index()``.
            UnavailableError: ``hi`` is beyond ``last_index() + 1``.
        """
        ...

    def term(self, i: int) -> int:
        """Term of entry ``i``, for ``first_index()-1 <= i <= last_index()``.

        Raises:
            CompactedError: ``i < first_index() - 1``.
            UnavailableError: ``i > last_index()``.
        """
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot (may raise SnapshotTemporarilyUnavailable)."""
        ...


class MemoryStorage:
    """In-memory Storage for tests and simulations (etcd's ``MemoryStorage``).

    ``_ents[0]`` is a dummy entry holding the index/term of the last compaction point or
    snapshot, so ``_ents[i - offset]`` is entry ``i`` where ``offset = _ents[0].index``.
    """

    def __init__(self, conf_state: ConfState | None = None) -> None:
        """``conf_state`` bootstraps the membership of a brand-new group (as of index 0)."""
        self.hard_state = HardState()
        self._snapshot = Snapshot()
        if conf_state is not None:
            self._snapshot.metadata.conf_state = _copy_conf_state(conf_state)
        # Invariant: _ents non-empty; _ents[k].index == _ents[0].index + k.
        self._ents: list[Entry] = [Entry()]

    # -- Storage protocol ------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return replace(self.hard_state), _copy_conf_state(self._snapshot.metadata.conf_state)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError(f"entries({lo}, {hi}): compacted up to {offset}")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries({lo}, {hi}): last index is {self.last_index()}")
        if len(self._ents) == 1:
            return []
        return limit_size(self._ents[lo - offset : hi - offset], max_bytes)

    def term(self, i: int) -> int:
        offset = self._ents[0].index
        if i < offset:
            raise CompactedError(f"term({i}): compacted up to {offset}")
        if i - offset >= len(self._ents):
            raise UnavailableError(f"term({i}): last index is {self.last_index()}")
        return self._ents[i - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- Writers (used by the driver / tests) ------------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = replace(hs)

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log by ``snap``; older snapshots are refused.

        Raises:
            SnapshotOutOfDateError: ``snap`` is not newer than the current snapshot.
        """
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot {snap.metadata.index} <= current {self._snapshot.metadata.index}"
            )
        self._snapshot = snap
        self._ents = [Entry(term=snap.metadata.term, index=snap.metadata.index)]

    def create_snapshot(self, i: int, cs: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine as of applied index ``i``.

        Raises:
            SnapshotOutOfDateError: ``i`` is not newer than the current snapshot.
            UnavailableError: ``i`` is beyond the last index.
        """
        if i <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(f"snapshot {i} <= {self._snapshot.metadata.index}")
        if i > self.last_index():
            raise UnavailableError(f"snapshot {i} > last index {self.last_index()}")
        offset = self._ents[0].index
        meta = SnapshotMetadata(
            conf_state=_copy_conf_state(
                cs if cs is not None else self._snapshot.metadata.conf_state
            ),
            index=i,
            term=self._ents[i - offset].term,
        )
        self._snapshot = Snapshot(data=data, metadata=meta)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Discard entries before ``compact_index`` (which becomes the dummy entry).

        The application must not compact beyond its applied index.

        Raises:
            CompactedError: already compacted at or beyond ``compact_index``.
            UnavailableError: ``compact_index`` is beyond the last index.
        """
        offset = self._ents[0].index
        if compact_index <= offset:
            raise CompactedError(f"compact({compact_index}): already compacted to {offset}")
        if compact_index > self.last_index():
            raise UnavailableError(f"compact({compact_index}) > last {self.last_index()}")
        i = compact_index - offset
        head = self._ents[i]
        self._ents = [Entry(term=head.term, index=head.index), *self._ents[i + 1 :]]

    def append(self, entries: list[Entry]) -> None:
        """Append entries, truncating any conflicting suffix (entry ``i`` replaces ``>= i``)."""
        if not entries:
            return
        first = self.first_index()
        last = entries[0].index + len(entries) - 1
        if last < first:
            return  # all already compacted
        if first > entries[0].index:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise UnavailableError(
                f"missing log entry [last: {self.last_index()}, append at: {entries[0].index}]"
            )
        ents = self._ents
        if offset < len(ents):
            del ents[offset:]  # the conflicting suffix
        ents.extend(entries)  # in place: an append costs O(entries), not O(log)

    def _check(self) -> None:
        base = self._ents[0].index
        for k, e in enumerate(self._ents):
            assert e.index == base + k, (e.index, base + k)
        assert self.hard_state.commit <= self.last_index(), (self.hard_state, self.last_index())


def _copy_conf_state(cs: ConfState) -> ConfState:
    return ConfState(
        voters=list(cs.voters),
        learners=list(cs.learners),
        voters_outgoing=list(cs.voters_outgoing),
        learners_next=list(cs.learners_next),
        auto_leave=cs.auto_leave,
    )
