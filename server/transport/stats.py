"""What the peer transport measures per peer: bytes, failures, and round-trip time.

Theory of operation: the transport counts into one :class:`PeerStats` per peer (plain
integers, read when scraped: etcd's ``etcd_network_peer_*`` metrics and v2's
``/v2/stats/leader``). The round-trip time is measured as etcd's prober does, on the
connection itself: every :data:`~coord.server.transport.peer.PROBE_INTERVAL` the sender puts a
PROBE frame in its stream, behind any messages queued before it, and the receiver answers
PROBE_ACK when it has read that far; the time between is the round trip through both event
loops and the network (a follower whose loop is slow or blocked stands out). A probe not
answered within ``PROBE_TIMEOUT`` counts as failed. :class:`Latency` keeps the current,
minimum, maximum, mean and standard deviation (Welford's online algorithm) of the round trips,
as v2's ``LatencyStats``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from coord.server.histogram import RTT_BUCKETS, Histogram

__all__ = ["Latency", "PeerStats"]


@dataclass
class Latency:
    """Round trips in seconds: current, extremes, running mean and variance (Welford)."""

    count: int = 0
    current: float = 0.0
    minimum: float = math.inf
    maximum: float = 0.0
    mean: float = 0.0
    _m2: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.current = seconds
        self.minimum = min(self.minimum, seconds)
        self.maximum = max(self.maximum, seconds)
        delta = seconds - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (seconds - self.mean)

    @property
    def stddev(self) -> float:
        return math.sqrt(self._m2 / self.count) if self.count else 0.0

    def to_json(self) -> dict[str, float]:
        """v2's ``latency`` object (seconds here; v2 reports milliseconds)."""
        return {
            "current": self.current,
            "average": self.mean,
            "stddev": self.stddev,
            "min": self.minimum if self.count else 0.0,
            "max": self.maximum,
        }

    def _check(self) -> None:
        assert self.count >= 0
        assert self._m2 >= -1e-12
        if self.count:
            assert self.minimum <= self.mean + 1e-12
            assert self.mean <= self.maximum + 1e-12
            assert self.minimum <= self.current <= self.maximum


@dataclass
class PeerStats:
    """One peer's counts (see the module docstring)."""

    sent_bytes: int = 0  # frames written to it
    received_bytes: int = 0  # frames read from it
    sent_failures: int = 0  # messages to it dropped (queue full or not connected)
    heartbeat_failures: int = 0  # of those, heartbeats
    appends_sent: int = 0  # MsgApp queued to it (v2's sendAppendRequestCnt)
    appends_received: int = 0  # MsgApp read from it (v2's recvAppendRequestCnt)
    probes_ok: int = 0
    probes_failed: int = 0
    rtt: Histogram = field(default_factory=lambda: Histogram(RTT_BUCKETS))
    latency: Latency = field(default_factory=Latency)

    def round_trip(self, seconds: float) -> None:
        self.probes_ok += 1
        self.rtt.observe(seconds)
        self.latency.observe(seconds)
