"""Inflights: the sliding window of in-flight MsgApp messages to one follower (flow control)."""

from __future__ import annotations

from collections import deque

__all__ = ["Inflights"]


class Inflights:
    """Last indices (and byte sizes) of appends sent but not yet acknowledged, oldest first.

    Full when ``size`` messages or ``max_bytes`` bytes are in flight.
    """

    __slots__ = ("_q", "bytes", "max_bytes", "size")

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        # Maximum number of in-flight messages (>= 1).
        self.size = size
        # Maximum in-flight bytes; 0 means unlimited.
        self.max_bytes = max_bytes
        # Total bytes in flight.  Invariant: == sum of sizes in _q.
        self.bytes = 0
        # (last index, bytes) per message; indices strictly increasing.
        self._q: deque[tuple[int, int]] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def add(self, index: int, nbytes: int) -> None:
        if self.full():
            raise AssertionError("cannot add into a full inflights")
        self._q.append((index, nbytes))
        self.bytes += nbytes

    def free_le(self, to: int) -> None:
        """Free every message whose last index is ``<= to`` (they were acknowledged)."""
        q = self._q
        while q and q[0][0] <= to:
            self.bytes -= q.popleft()[1]

    def free_first_one(self) -> None:
        if self._q:
            self.bytes -= self._q.popleft()[1]

    def full(self) -> bool:
        return len(self._q) >= self.size or (self.max_bytes > 0 and self.bytes >= self.max_bytes)

    def reset(self) -> None:
        self._q.clear()
        self.bytes = 0

    def _check(self) -> None:
        assert len(self._q) <= self.size
        assert self.bytes == sum(b for _, b in self._q)
        prev = -1
        for idx, _ in self._q:
            assert idx > prev
            prev = idx
