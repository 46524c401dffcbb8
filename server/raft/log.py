"""RaftLog: the node's view of the whole log, the stable Storage plus the Unstable tail.

Indices: ``first_index() - 1`` is the compaction point (its term is still known),
``[first_index(), last_index()]`` are available entries.  ``committed`` is the highest index known
to be committed; ``applied`` the highest index the application has applied (reported through
:meth:`RawNode.advance`).  Invariant (``_check``): ``applied <= committed <= last_index()``.
"""

from __future__ import annotations

from .errors import CompactedError, UnavailableError
from .log_unstable import Unstable
from .storage import Storage, limit_size
from .types import Entry, Snapshot

__all__ = ["RaftLog"]


class RaftLog:
    def __init__(self, storage: Storage, max_next_ents_size: int | None = None) -> None:
        self.storage = storage
        # Entries/snapshot not yet persisted.  unstable.offset == storage.last_index()+1 at start.
        self.unstable = Unstable(storage.last_index() + 1)
        first = storage.first_index()
        # Highest index known committed (quorum-replicated).  Invariant: <= last_index().
        self.committed = first - 1
        # Highest index applied by the application.  Invariant: applied <= committed.
        self.applied = first - 1
        # Byte limit for the committed entries handed out in one Ready (None: unlimited).
        self.max_next_ents_size = max_next_ents_size

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})"
        )

    # -- bounds and terms --------------------------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry ``i`` (``first_index()-1 <= i <= last_index()``).

        Raises:
            CompactedError: ``i`` is before the compaction point.
            UnavailableError: ``i`` is beyond the last index.
        """
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        dummy = self.first_index() - 1
        if i < dummy:
            raise CompactedError(f"term({i}): compacted to {dummy}")
        if i > self.last_index():
            raise UnavailableError(f"term({i}): last index {self.last_index()}")
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        try:
            return self.term(i)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, t: int) -> bool:
        try:
            return self.term(i) == t
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Is a log ending at (lasti, term) at least as up-to-date as ours (Raft §5.4.1)?"""
        lt = self.last_term()
        return term > lt or (term == lt and lasti >= self.last_index())

    # -- appending ---------------------------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: list[Entry]
    ) -> int | None:
        """Follower side of AppendEntries.  Returns the last new index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        lastnewi = index + len(ents)
        ci = self.find_conflict(ents)
        if ci != 0:
            if ci <= self.committed:
                # etcd-io/raft log.go maybeAppend: "entry %d conflict with committed entry".
                e = ents[ci - (index + 1)]
                raise self.divergence(e.index, e.term)
            self.append(ents[ci - (index + 1) :])
        self.commit_to(min(committed, lastnewi))
        return lastnewi

    def check_committed_agree(self, index: int, log_term: int, ents: list[Entry]) -> None:
        """Check an append's ``(index, log_term)`` and ``ents`` against our committed entries.

        The leader's log holds every committed entry (Leader Completeness), so any of them
        whose term differs from ours at an index ``<= committed`` means the logs diverged.
        Indices compacted away here cannot be checked and are skipped.

        Raises:
            AssertionError: see :meth:`divergence`.
        """
        for i, t in ((index, log_term), *((e.index, e.term) for e in ents)):
            if i > self.committed:
                break
            if i >= self.first_index() - 1 and self.term(i) != t:
                raise self.divergence(i, t)

    def divergence(self, index: int, term: int, ours: int | None = None) -> AssertionError:
        """The error for a leader's entry ``(index, term)`` contradicting our committed entry
        ``ours`` (default: the same index)."""
        ours = index if ours is None else ours
        return AssertionError(
            f"entry {index} (term {term}) conflicts with committed entry {ours} "
            f"(term {self.term_or_zero(ours)}) [committed({self.committed})]: "
            f"this member's log diverged from the leader's"
        )

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"after({after}) is out of range [committed({self.committed})]")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: list[Entry]) -> int:
        """Index of the first entry of ``ents`` that is new or conflicts with our log; 0 if none."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest ``(i, t)`` with ``i <= index`` and ``t = term(i) <= term`` (fast backtracking).

        If the term at some index is unknown (compacted), returns ``(i, 0)``.
        """
        while index > 0:
            try:
                t = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # -- commit / apply / stable ---------------------------------------------------------------

    def commit_to(self, tocommit: int) -> None:
        if self.committed < tocommit:
            if self.last_index() < tocommit:
                raise AssertionError(
                    f"tocommit({tocommit}) is out of range [last_index({self.last_index()})]"
                )
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit ``max_index`` only if its entry is from ``term`` (Raft Figure 8 rule)."""
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise AssertionError(f"applied({i}) out of range [{self.applied}, {self.committed}]")
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def restore(self, s: Snapshot) -> None:
        self.committed = s.metadata.index
        self.unstable.restore(s)

    # -- reading -----------------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        return list(self.unstable.entries)

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def next_committed_ents(self) -> list[Entry]:
        """Committed entries not yet applied (bounded by ``max_next_ents_size``)."""
        if self.has_pending_snapshot():
            return []
        off = max(self.applied + 1, self.first_index())
        if self.committed + 1 > off:
            return self.slice(off, self.committed + 1, self.max_next_ents_size)
        return []

    def has_next_committed_ents(self) -> bool:
        if self.has_pending_snapshot():
            return False
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def entries(self, i: int, max_bytes: int | None) -> list[Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_bytes)

    def slice(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        """Entries ``[lo, hi)`` within ``max_bytes`` (at least one).

        Raises:
            CompactedError: ``lo`` was compacted.
        """
        if lo > hi:
            raise AssertionError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise CompactedError(f"slice({lo}, {hi}): first index {fi}")
        if hi > self.last_index() + 1:
            raise AssertionError(f"slice[{lo},{hi}) out of bound [{fi},{self.last_index()}]")
        if lo == hi:
            return []
        ents: list[Entry] = []
        uoff = self.unstable.offset
        if lo < uoff:
            shi = min(hi, uoff)
            stored = self.storage.entries(lo, shi, max_bytes)
            if len(stored) < shi - lo:
                return stored  # hit the size limit
            ents = stored
        if hi > uoff:
            ents = ents + self.unstable.slice(max(lo, uoff), hi)
        return limit_size(ents, max_bytes)

    def _check(self) -> None:
        assert self.applied <= self.committed, self
        assert self.committed <= self.last_index(), (self, self.last_index())
        assert self.first_index() - 1 <= self.last_index(), self
        u = self.unstable
        for k, e in enumerate(u.entries):
            assert e.index == u.offset + k, (e, u.offset, k)
        if u.snapshot is not None:
            assert u.offset == u.snapshot.metadata.index + 1
