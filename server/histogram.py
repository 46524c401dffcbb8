"""Fixed-bucket histograms of plain counts, turned into Prometheus histograms at scrape time.

Theory of operation: the code that measures (the WAL's fsync in a worker thread, the Ready
loop's apply, a peer probe, a gRPC call) calls :meth:`Histogram.observe`: one ``bisect`` and
two additions, about 80 ns. A prometheus-client ``Histogram`` costs about 600 ns per
``observe`` (it takes a lock), measured on this project's machines; on the request path and
in the Ready loop that difference is the point, and the measuring modules need not depend on
the metrics layer. :mod:`coord.server.metrics` reads the counts when scraped and hands them to
prometheus-client's ``HistogramMetricFamily``, which formats them. The bucket sets are etcd's
(``prometheus.ExponentialBuckets(start, 2, n)``), so the ``le`` labels match etcd's exactly.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

__all__ = [
    "APPLY_BUCKETS",
    "FSYNC_BUCKETS",
    "GRPC_BUCKETS",
    "LATENCY_BUCKETS",
    "RTT_BUCKETS",
    "SNAPSHOT_BUCKETS",
    "Histogram",
    "exponential",
    "go_float",
]


def go_float(value: float) -> str:
    """``value`` as Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` prints the bounds in question
    (shortest round-trip digits, no ``.0``): ``1`` and ``2.5``, as etcd's ``le`` labels."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def exponential(start: float, count: int) -> tuple[float, ...]:
    """``prometheus.ExponentialBuckets(start, 2, count)``, computed as Go does (by repeated
    multiplication), so that the bounds print as etcd's ``le`` labels."""
    out, bound = [], start
    for _ in range(count):
        out.append(bound)
        bound *= 2
    return tuple(out)


#: etcd_disk_wal_fsync_duration_seconds and etcd_disk_backend_commit_duration_seconds.
FSYNC_BUCKETS = exponential(0.001, 14)
APPLY_BUCKETS = FSYNC_BUCKETS
#: etcd_disk_backend_snapshot_duration_seconds: 10 ms to 655 s.
SNAPSHOT_BUCKETS = exponential(0.01, 17)
#: etcd_network_peer_round_trip_time_seconds: 0.1 ms to 3.3 s.
RTT_BUCKETS = exponential(0.0001, 16)
#: the dashboard's request latency: 50 µs to 6.6 s
LATENCY_BUCKETS = exponential(0.00005, 18)
#: grpc_server_handling_seconds: go-grpc-prometheus' default (prometheus.DefBuckets).
GRPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    """Observations counted per bucket (``counts[i]``: at most ``bounds[i]``; the last one:
    above every bound), with their sum."""

    bounds: tuple[float, ...] = FSYNC_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, observations at most le)`` for every bound, then ``("+Inf", all)``."""
        out, running = [], 0
        for le, n in zip((*map(go_float, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((le, running))
        return out

    def to_json(self) -> dict[str, object]:
        """Bounds, per-bucket counts and sum (the dashboard computes windowed quantiles)."""
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.total}

    def _check(self) -> None:
        assert len(self.counts) == len(self.bounds) + 1
        assert list(self.bounds) == sorted(self.bounds)
        assert all(n >= 0 for n in self.counts)
