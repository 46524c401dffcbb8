"""What the WAL measures of its disk, for ``/metrics`` (server/metrics.py).

A fixed-bucket histogram of plain counts rather than a prometheus-client ``Histogram``: the WAL
observes from a worker thread once per fsync and must not depend on the metrics layer; the
collector turns the counts into etcd's ``etcd_disk_wal_fsync_duration_seconds`` at scrape time.
The buckets are etcd's (prometheus.ExponentialBuckets(0.001, 2, 14): 1 ms to 8.192 s).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

__all__ = ["FSYNC_BUCKETS", "DiskStats", "Histogram"]

FSYNC_BUCKETS = tuple(0.001 * 2**i for i in range(14))


@dataclass
class Histogram:
    """Observations counted per bucket (``counts[i]``: at most ``bounds[i]``; the last one:
    above every bound), with their sum."""

    bounds: tuple[float, ...] = FSYNC_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(FSYNC_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, observations at most le)`` for every bound, then ``("+Inf", all)``."""
        out, running = [], 0
        for le, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((le, running))
        return out

    def _check(self) -> None:
        assert len(self.counts) == len(self.bounds) + 1
        assert list(self.bounds) == sorted(self.bounds)
        assert all(n >= 0 for n in self.counts)


@dataclass
class DiskStats:
    """The WAL's fsync latencies and the bytes it wrote."""

    fsync: Histogram = field(default_factory=Histogram)
    written: int = 0
