"""The unstable part of the log: entries and a snapshot not yet persisted to Storage.

``Unstable.entries[k]`` has raft index ``offset + k``.  ``offset`` may be *below*
``storage.last_index() + 1``: a follower that receives conflicting entries truncates its unstable
tail at the conflict, and the driver then overwrites the stable suffix (``MemoryStorage.append``
replaces every entry at or after the first new index).
"""

from __future__ import annotations

from .types import Entry, Snapshot

__all__ = ["Unstable"]


class Unstable:
    def __init__(self, offset: int) -> None:
        # Snapshot received from the leader and not yet persisted (at most one).
        self.snapshot: Snapshot | None = None
        # Entries not yet persisted; entries[k].index == offset + k.
        self.entries: list[Entry] = []
        # Index of entries[0] (or where it would be).  Invariant: with a snapshot,
        # offset == snapshot.metadata.index + 1.
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        """First log index if there is an unstable snapshot (it defines the log's start)."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        """Term of entry ``i`` if the unstable part knows it."""
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to ``i`` (with term ``t``) were persisted; drop them if still ours."""
        gt = self.maybe_term(i)
        if gt is None:
            return
        # Only shrink if the entry was not overwritten since it was handed out (term check).
        if gt == t and i >= self.offset:
            del self.entries[: i + 1 - self.offset]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, s: Snapshot) -> None:
        self.offset = s.metadata.index + 1
        self.entries = []
        self.snapshot = s

    def truncate_and_append(self, ents: list[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replace the whole unstable part (the stable suffix >= after is overwritten too).
            self.offset = after
            self.entries = list(ents)
        else:
            # Truncate to after-1, then append.
            del self.entries[after - self.offset :]
            self.entries.extend(ents)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        assert self.offset <= lo <= hi <= self.offset + len(self.entries), (
            lo,
            hi,
            self.offset,
            len(self.entries),
        )
        return self.entries[lo - self.offset : hi - self.offset]
