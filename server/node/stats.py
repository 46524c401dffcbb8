"""What the node measures of itself: etcd's server counters, apply and snapshot durations,
and the leader's view of each follower (replication lag, last heard).

Theory of operation: the Ready loop and the read loop count into one :class:`NodeStats`
(plain integers and :class:`~coord.server.histogram.Histogram` counts: the metrics layer reads
them when scraped, so the hot path pays an addition). The leader's replication lag in *time*
is the age of the oldest entry a follower has not acknowledged: :class:`AppendClock` remembers
when the leader appended each batch of its log (``(last index of the batch, time)``, in index
order) and answers "when was index ``i`` appended" by bisection; batches every follower has
acknowledged are forgotten, and at most :data:`AppendClock.LIMIT` are kept (a follower that
far behind reports the age of the oldest batch kept, a lower bound).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

from coord.server.histogram import APPLY_BUCKETS, SNAPSHOT_BUCKETS, Histogram

__all__ = ["AppendClock", "FollowerStatus", "NodeStats"]


@dataclass
class NodeStats:
    """etcd's server counters (etcd_server_*) and the backend's durations (etcd_disk_backend_*)."""

    #: a new, known leader (etcd_server_leader_changes_seen_total)
    leader_changes: int = 0
    #: proposals dropped or timed out (etcd_server_proposals_failed_total)
    proposals_failed: int = 0
    #: applies over 100 ms (etcd_server_slow_apply_total)
    slow_applies: int = 0
    #: ReadIndex rounds retried for want of an answer (etcd_server_slow_read_indexes_total)
    slow_read_indexes: int = 0
    #: linearizable reads that failed (etcd_server_read_indexes_failed_total)
    read_indexes_failed: int = 0
    #: applying one Ready's committed entries (etcd_disk_backend_commit_duration_seconds)
    apply: Histogram = field(default_factory=lambda: Histogram(APPLY_BUCKETS))
    #: taking a snapshot and compacting behind it (etcd_disk_backend_snapshot_duration_seconds)
    snapshot: Histogram = field(default_factory=lambda: Histogram(SNAPSHOT_BUCKETS))


@dataclass(frozen=True)
class FollowerStatus:
    """The leader's view of one follower."""

    id: int
    match: int  # highest index known replicated there
    lag_entries: int  # the leader's last index minus match
    lag_seconds: float  # age of the oldest entry not acknowledged (0 when caught up)
    since_heard: float | None  # seconds since the leader last received a message from it
    is_learner: bool


class AppendClock:
    """When the leader appended which entries (see the module docstring)."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._last: deque[int] = deque()  # last index of each batch, increasing
        self._time: deque[float] = deque()

    def appended(self, last_index: int, now: float) -> None:
        """The leader appended entries up to ``last_index`` at ``now``."""
        while self._last and self._last[-1] >= last_index:  # a new term rewrote the tail
            self._last.pop()
            self._time.pop()
        self._last.append(last_index)
        self._time.append(now)
        if len(self._last) > self.LIMIT:
            self._last.popleft()
            self._time.popleft()

    def acknowledged(self, min_match: int) -> None:
        """Every follower holds entries up to ``min_match``: forget batches up to it."""
        while self._last and self._last[0] <= min_match:
            self._last.popleft()
            self._time.popleft()

    def age(self, match: int, now: float) -> float:
        """Seconds since the oldest entry after ``match`` was appended (0 when none is kept)."""
        i = bisect_left(self._last, match + 1)
        return now - self._time[i] if i < len(self._last) else 0.0

    def clear(self) -> None:
        self._last.clear()
        self._time.clear()

    def _check(self) -> None:
        assert len(self._last) == len(self._time) <= self.LIMIT
        assert all(a < b for a, b in zip(self._last, list(self._last)[1:], strict=False))
        assert all(a <= b for a, b in zip(self._time, list(self._time)[1:], strict=False))
