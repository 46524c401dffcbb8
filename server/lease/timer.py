"""Leader-side lease expiry (not replicated, time-based, sans-IO).

Theory of operation: only the leader decides expiry. While this member leads, the timer keeps
a deadline per lease (``now + TTL`` at grant or keep-alive). ``expired()`` lists leases whose
deadline passed; the app's small asyncio loop proposes a LEASE_REVOKE for each, and the revoke
(applied on every member) deletes the keys and the lease. When a member becomes leader,
:meth:`promote` gives every live lease a fresh deadline of ``now + extend + TTL`` (etcd's
Promote: a leader change extends leases rather than expiring them early). When it loses
leadership, :meth:`demote` forgets all deadlines. The clock is injected, so tests drive time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .lessor import Lessor

__all__ = ["LeaseTimer", "min_lease_ttl"]

#: A revoke proposed for an expired lease is retried after this many seconds if still alive.
RETRY_REVOKE_AFTER = 2.0


def min_lease_ttl(election_timeout_ms: int) -> int:
    """etcd's minimum lease TTL: ceil(1.5 x election timeout) in seconds (2 s by default)."""
    return max(1, math.ceil(1.5 * election_timeout_ms / 1000.0))


class LeaseTimer:
    """Deadlines of live leases while this member is leader."""

    def __init__(self, lessor: Lessor, clock: Callable[[], float]) -> None:
        self._lessor = lessor
        self._clock = clock
        self._deadline: dict[int, float] = {}
        self._revoking: dict[int, float] = {}
        self.active = False
        lessor.add_listener(self._granted, self._revoked)

    def _granted(self, lease_id: int, ttl: int) -> None:
        if self.active:
            self._deadline[lease_id] = self._clock() + ttl

    def _revoked(self, lease_id: int) -> None:
        self._deadline.pop(lease_id, None)
        self._revoking.pop(lease_id, None)

    def promote(self, extend: float) -> None:
        """Become the expiry authority: every live lease expires at now + extend + TTL."""
        now = self._clock()
        self.active = True
        self._deadline = {i: now + extend + ttl for i, ttl in self._lessor.items()}
        self._revoking.clear()

    def demote(self) -> None:
        """Stop deciding expiry (another member leads)."""
        self.active = False
        self._deadline.clear()
        self._revoking.clear()

    def renew(self, lease_id: int) -> int:
        """Keep-alive: reset the deadline; returns the granted TTL, 0 if unknown or expired."""
        ttl = self._lessor.ttl(lease_id)
        if ttl is None:
            return 0
        now = self._clock()
        if self.active:
            if self._deadline.get(lease_id, math.inf) <= now:
                return 0
            self._deadline[lease_id] = now + ttl
        return ttl

    def remaining(self, lease_id: int) -> int:
        """Whole seconds left (truncated), -1 for an unknown lease, 0 once expired."""
        ttl = self._lessor.ttl(lease_id)
        if ttl is None:
            return -1
        if not self.active or lease_id not in self._deadline:
            return ttl
        return max(0, int(self._deadline[lease_id] - self._clock()))

    def expired(self) -> list[int]:
        """Leases past their deadline that need a revoke proposal (each returned once per
        RETRY_REVOKE_AFTER seconds until the revoke is applied)."""
        if not self.active:
            return []
        now = self._clock()
        out = []
        for lease_id, deadline in self._deadline.items():
            if deadline <= now and self._revoking.get(lease_id, -math.inf) <= now:
                out.append(lease_id)
        for lease_id in out:
            self._revoking[lease_id] = now + RETRY_REVOKE_AFTER
        return sorted(out)

    def next_deadline(self) -> float | None:
        """The earliest deadline, None when there is none."""
        return min(self._deadline.values(), default=None)

    def _check(self) -> None:
        if not self.active:
            assert not self._deadline
            assert not self._revoking
        for lease_id in self._deadline:
            assert self._lessor.exists(lease_id), lease_id
        for lease_id in self._revoking:
            assert lease_id in self._deadline, lease_id
