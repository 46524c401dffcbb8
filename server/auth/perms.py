"""Key-range permissions with etcd's interval rules (etcd server/auth/range_perm_cache.go).

Theory of operation: a permission is ``(type, key, range_end)`` with type READ (0), WRITE (1)
or READWRITE (2). ``range_end`` empty names the single key ``key``; ``b"\\0"`` names every
key from ``key`` on; otherwise the half-open interval ``[key, range_end)`` (nothing if
``range_end <= key``). etcd compares keys as pkg/adt's BytesAffineComparable, in which the
empty string is the largest element (+infinity), so a permission whose ``key`` is empty
names no key at all, and nothing is granted on an empty request key (etcd refuses such
grants and requests elsewhere anyway). A user's permissions are the union over its roles'
permissions, kept separately for reading (READ, READWRITE) and for writing (WRITE,
READWRITE) as sorted, disjoint, non-adjacent, non-empty half-open intervals (``end`` None:
unbounded; a single key ``k`` is ``[k, k + b"\\0")``, since no key lies between the two);
intervals that overlap or touch are merged. A request for a single key (``range_end``
empty) is allowed if an interval contains the key, as etcd's IntervalTree.Intersects
answers; a request for a range (``b"\\0"``: unbounded) if one merged interval covers it
whole, as etcd's IntervalTree.Contains answers over the union of the unmerged intervals.
Lookups bisect the merged list: O(log n).

Empty request ranges (``range_end`` neither empty nor ``b"\\0"`` and ``range_end <= key``)
are coord's decision: allowed iff ``key`` itself is covered (the single-key rule). etcd's
Contains on such an interval visits only tree nodes that contain ``key`` (Interval.Compare
finds no other node overlapping it), so it is never true where coord's rule is false; but
its walk prunes a subtree when the node at its top begins at or after ``range_end`` and
ends at or before ``key``, even if a node below contains ``key``. Its answer thus depends on
the red-black tree's shape, i.e. on the order the permissions were inserted (e.g. ``[c, d)``
then ``[a, z)`` denies ``key=m, range_end=c``; the other order allows it). Such a request
names no key (a Range returns nothing, a DeleteRange deletes nothing), so the deterministic
rule, which agrees with etcd whenever one permission is involved, grants nothing real.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable

__all__ = ["READ", "READWRITE", "WRITE", "KeyPermissions"]

READ, WRITE, READWRITE = 0, 1, 2

_Interval = tuple[bytes, bytes | None]  # [begin, end), end None: unbounded


def _interval(key: bytes, range_end: bytes) -> _Interval | None:
    """The interval a permission names, None if it names no key."""
    if not key:  # BytesAffineComparable: b"" is +infinity, so [b"", ...) holds no key
        return None
    if not range_end:
        return key, key + b"\x00"
    if range_end == b"\x00":
        return key, None
    return (key, range_end) if key < range_end else None


def _merge(intervals: Iterable[_Interval]) -> list[_Interval]:
    """Sorted, disjoint, non-adjacent intervals with the same union as ``intervals``."""
    out: list[_Interval] = []
    for begin, end in sorted(intervals, key=lambda iv: iv[0]):
        if out:
            last_begin, last_end = out[-1]
            if last_end is None or begin <= last_end:  # overlapping or touching
                if last_end is not None and (end is None or end > last_end):
                    out[-1] = (last_begin, end)
                continue
        out.append((begin, end))
    return out


class KeyPermissions:
    """A user's merged read and write intervals (see the module docstring)."""

    def __init__(self, read: list[_Interval], write: list[_Interval]) -> None:
        self._read = read
        self._write = write
        self._read_begins = [b for b, _ in read]
        self._write_begins = [b for b, _ in write]

    @classmethod
    def build(cls, perms: Iterable[tuple[int, bytes, bytes]]) -> KeyPermissions:
        """The union of ``(type, key, range_end)`` permissions (unknown types grant nothing,
        as etcd's switch on the type ignores them)."""
        read: list[_Interval] = []
        write: list[_Interval] = []
        for kind, key, range_end in perms:
            iv = _interval(key, range_end)
            if iv is None:
                continue
            if kind in (READ, READWRITE):
                read.append(iv)
            if kind in (WRITE, READWRITE):
                write.append(iv)
        return cls(_merge(read), _merge(write))

    def allowed(self, key: bytes, range_end: bytes, write: bool) -> bool:
        """May the holder read (``write`` False) or write ``key`` (``range_end`` empty),
        ``[key, +inf)`` (``range_end`` ``b"\\0"``) or ``[key, range_end)``?"""
        intervals, begins = (
            (self._write, self._write_begins) if write else (self._read, self._read_begins)
        )
        # the only merged interval that can contain key: the last one beginning at or before it
        i = bisect.bisect_right(begins, key) - 1
        if i < 0:
            return False
        end = intervals[i][1]
        if not range_end or (range_end != b"\x00" and range_end <= key):
            return end is None or key < end  # a single key, or an empty range (see above)
        if range_end == b"\x00":
            return end is None
        return end is None or range_end <= end

    def _check(self) -> None:
        """Assert the invariants: each list sorted, disjoint, non-adjacent, non-empty."""
        for intervals, begins in (
            (self._read, self._read_begins),
            (self._write, self._write_begins),
        ):
            assert begins == [b for b, _ in intervals]
            for b, e in intervals:
                assert b, (b, e)  # empty keys name nothing (see _interval)
                assert e is None or b < e, (b, e)  # non-empty
            for (b1, e1), (b2, _e2) in itertools.pairwise(intervals):
                assert b1 < b2, (b1, b2)  # sorted
                assert e1 is not None, (b1, b2)  # only the last may be unbounded
                assert e1 < b2, (b1, e1, b2)  # disjoint and not touching
