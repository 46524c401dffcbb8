"""Key-range permissions with etcd's interval rules (etcd server/auth/range_perm_cache.go).

Theory of operation: a permission is ``(type, key, range_end)`` with type READ (0), WRITE (1)
or READWRITE (2). ``range_end`` empty names the single key ``key``; ``b"\\0"`` names every
key from ``key`` on; otherwise the half-open interval ``[key, range_end)`` (nothing if
``range_end <= key``). A user's permissions are the union over its roles' permissions, kept
separately for reading and for writing as sorted, disjoint, non-adjacent half-open intervals
(``end`` None: unbounded; a single key ``k`` is ``[k, k + b"\\0")``, since no key lies between
the two). A request for a single key (``range_end`` empty) is allowed if an interval contains
the key; a request for a range (``b"\\0"``: unbounded) if one merged interval covers it whole
(etcd's IntervalTree.Contains over the union). A request range that is empty
(``range_end <= key``) asks for nothing but is treated as etcd's tree treats it: allowed iff
``key`` itself is covered. Lookups bisect the merged list: O(log n).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable

__all__ = ["READ", "READWRITE", "WRITE", "KeyPermissions"]

READ, WRITE, READWRITE = 0, 1, 2

Interval = tuple[bytes, bytes | None]  # [begin, end), None: unbounded


def _interval(key: bytes, range_end: bytes) -> Interval | None:
    if not range_end:
        return key, key + b"\x00"
    if range_end == b"\x00":
        return key, None
    return (key, range_end) if key < range_end else None


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
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

    def __init__(self, read: list[Interval], write: list[Interval]) -> None:
        self._read = read
        self._write = write
        self._read_begins = [b for b, _ in read]
        self._write_begins = [b for b, _ in write]

    @classmethod
    def build(cls, perms: Iterable[tuple[int, bytes, bytes]]) -> KeyPermissions:
        """The union of ``(type, key, range_end)`` permissions."""
        read: list[Interval] = []
        write: list[Interval] = []
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
        """May the holder read (``write`` False) or write ``key`` / ``[key, range_end)``?"""
        intervals, begins = (
            (self._write, self._write_begins) if write else (self._read, self._read_begins)
        )
        i = bisect.bisect_right(begins, key) - 1
        if i < 0:
            return False
        end = intervals[i][1]
        if not range_end or (range_end != b"\x00" and range_end <= key):
            return end is None or key < end
        if range_end == b"\x00":
            return end is None
        return end is None or range_end <= end

    def _check(self) -> None:
        for intervals, begins in (
            (self._read, self._read_begins),
            (self._write, self._write_begins),
        ):
            assert begins == [b for b, _ in intervals]
            for (b1, e1), (b2, _e2) in itertools.pairwise(intervals):
                assert e1 is not None, (b1, b2)
                assert e1 < b2, (b1, e1, b2)  # disjoint, not touching
            for b, e in intervals:
                assert e is None or b < e, (b, e)
