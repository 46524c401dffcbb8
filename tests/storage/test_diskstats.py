"""The WAL's fsync histogram: etcd's buckets, cumulative counts for the scrape."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coord.server.storage.diskstats import FSYNC_BUCKETS, Histogram


def test_buckets_are_etcds() -> None:
    """prometheus.ExponentialBuckets(0.001, 2, 14), as etcd's le labels print them."""
    assert [repr(b) for b in FSYNC_BUCKETS] == [
        "0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064",
        "0.128", "0.256", "0.512", "1.024", "2.048", "4.096", "8.192",
    ]  # fmt: skip


@given(st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), max_size=50))
def test_cumulative_counts(values: list[float]) -> None:
    h = Histogram()
    for v in values:
        h.observe(v)
        h._check()
    cumulative = h.cumulative()
    assert [le for le, _ in cumulative][-1] == "+Inf"
    for (le, n), bound in zip(cumulative, FSYNC_BUCKETS, strict=False):
        assert le == repr(bound)
        assert n == sum(v <= bound for v in values)  # Prometheus' le: at most
    assert cumulative[-1][1] == len(values)
    assert abs(h.total - sum(values)) < 1e-9
