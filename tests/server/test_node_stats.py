"""The node's and the transport's measurements against simple models (randomized, with the
classes' own _check)."""

from __future__ import annotations

import math
import statistics

from hypothesis import given
from hypothesis import strategies as st

from coord.server.node.stats import AppendClock
from coord.server.transport.stats import Latency


@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.floats(0, 10), st.integers(0, 40)), min_size=1, max_size=60
    ),
    st.integers(1, 8),
)
def test_append_clock_ages_the_oldest_unacknowledged_entry(
    steps: list[tuple[int, float, int]], limit: int
) -> None:
    clock = AppendClock()
    clock.LIMIT = limit
    batches: list[tuple[int, float]] = []  # model: (last index, time) of every batch kept
    last, now = 0, 0.0
    for grow, dt, match in steps:
        now += dt
        last += grow
        clock.appended(last, now)
        batches.append((last, now))
        batches = batches[-limit:]
        clock._check()
        for m in (match, last - 1, last):
            pending = [t for idx, t in batches if idx > m]
            assert math.isclose(clock.age(m, now), now - pending[0] if pending else 0.0)
        floor = min(match, last)
        clock.acknowledged(floor)
        batches = [(i, t) for i, t in batches if i > floor]
        clock._check()
    # a new leader's term rewrites the tail: batches at or past the new last index go
    clock.appended(1, now + 1)
    clock._check()
    assert math.isclose(clock.age(0, now + 2), 1.0)


@given(st.lists(st.floats(0, 5, allow_nan=False), max_size=50))
def test_latency_matches_the_statistics_module(values: list[float]) -> None:
    lat = Latency()
    for v in values:
        lat.observe(v)
        lat._check()
    if not values:
        assert lat.to_json()["min"] == 0.0
        return
    assert lat.count == len(values)
    assert lat.current == values[-1]
    assert (lat.minimum, lat.maximum) == (min(values), max(values))
    assert math.isclose(lat.mean, statistics.fmean(values), abs_tol=1e-9)
    assert math.isclose(lat.stddev, statistics.pstdev(values), rel_tol=1e-6, abs_tol=1e-6)
