"""What the WAL measures of its disk, for ``/metrics`` (server/metrics.py).

The WAL observes from a worker thread once per fsync and must not depend on the metrics layer:
plain counts (:class:`~coord.server.histogram.Histogram`) that the collector turns into etcd's
``etcd_disk_wal_fsync_duration_seconds`` and ``etcd_disk_wal_write_bytes_total`` when scraped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coord.server.histogram import FSYNC_BUCKETS, Histogram

__all__ = ["DiskStats"]


@dataclass
class DiskStats:
    """The WAL's fsync latencies and the bytes it wrote."""

    fsync: Histogram = field(default_factory=lambda: Histogram(FSYNC_BUCKETS))
    written: int = 0
