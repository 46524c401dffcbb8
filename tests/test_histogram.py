"""Plain-count histograms: etcd's bucket sets, cumulative counts for the scrape."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coord.server.histogram import (
    FSYNC_BUCKETS,
    GRPC_BUCKETS,
    RTT_BUCKETS,
    SNAPSHOT_BUCKETS,
    Histogram,
)


def test_buckets_are_etcds() -> None:
    """prometheus.ExponentialBuckets(start, 2, n), as etcd's le labels print them."""
    assert [repr(b) for b in FSYNC_BUCKETS] == [
        "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064",
        "0.128", "0.256", "0.512", "1.024", "2.048", "4.096", "8.192",
    ]  # fmt: skip
    # etcd_network_peer_round_trip_time_seconds, as a real etcd 3.4 prints its le labels
    assert [repr(b) for b in RTT_BUCKETS] == [
        "0.0001", "0.0002", "0.0004", "0.0008", "0.0016", "0.0032", "0.0064", "0.0128",
        "0.0256", "0.0512", "0.1024", "0.2048", "0.4096", "0.8192", "1.6384", "3.2768",
    ]  # fmt: skip
    assert repr(SNAPSHOT_BUCKETS[0]) == "0.01"
    assert repr(SNAPSHOT_BUCKETS[-1]) == "655.36"
    # grpc_server_handling_seconds (prometheus.DefBuckets), as etcd --metrics extensive prints
    assert [le for le, _ in Histogram(GRPC_BUCKETS).cumulative()] == [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ]  # fmt: skip


@given(
    st.sampled_from([FSYNC_BUCKETS, RTT_BUCKETS, SNAPSHOT_BUCKETS]),
    st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=50),
)
def test_cumulative_counts(bounds: tuple[float, ...], values: list[float]) -> None:
    h = Histogram(bounds)
    for v in values:
        h.observe(v)
        h._check()
    cumulative = h.cumulative()
    assert [le for le, _ in cumulative][-1] == "+Inf"
    for (le, n), bound in zip(cumulative, bounds, strict=False):
        assert float(le) == bound
        assert n == sum(v <= bound for v in values)  # Prometheus' le: at most
    assert cumulative[-1][1] == len(values) == h.count
    assert abs(h.total - sum(values)) < 1e-6
    as_json = h.to_json()
    assert as_json["counts"] == h.counts
    assert as_json["bounds"] == list(bounds)
