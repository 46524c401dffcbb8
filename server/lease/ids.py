"""Lease ID allocation on the proposing member, after etcd's ``pkg/idutil``.

An ID is ``member-id low 16 bits | 40 bits of milliseconds at start | 8-bit counter``; the
low 48 bits are a counter seeded from the clock, so IDs from one member never repeat and IDs
from different members differ in the prefix. Masked to 63 bits (always positive, never 0).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LeaseIdGenerator"]

_SUFFIX_BITS = 48
_SUFFIX_MASK = (1 << _SUFFIX_BITS) - 1
_INT63 = (1 << 63) - 1


class LeaseIdGenerator:
    """Yields unique positive int63 lease IDs for one member."""

    def __init__(self, member_id: int, now_ms: Callable[[], int]) -> None:
        self._prefix = (member_id & 0xFFFF) << _SUFFIX_BITS
        self._suffix = (now_ms() & ((1 << 40) - 1)) << 8

    def next(self, taken: Callable[[int], bool] = lambda _id: False) -> int:
        """The next ID for which ``taken(id)`` is false."""
        while True:
            self._suffix = (self._suffix + 1) & _SUFFIX_MASK
            lease_id = (self._prefix | self._suffix) & _INT63
            if lease_id > 0 and not taken(lease_id):
                return lease_id
