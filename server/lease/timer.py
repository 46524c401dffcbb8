"""Leader-side lease expiry (not replicated, time-based, sans-IO).

Theory of operation: only the leader decides expiry and renewal (architecture rules 4, 9). The
timer asks an injected ``authority()`` which leader term this member may act for *now*: the
Raft core's current term while this member leads and has applied an entry of that term (so
every earlier entry, e.g. a revoke from an older leader, is applied), else 0. It is read from
the Raft state on every call, never cached from the last handled Ready: a leader whose Ready
loop waits on a stalled disk stops being the authority as soon as Raft steps a higher-term
message or check-quorum steps it down.

While this member is the authority for term T the timer keeps a deadline per lease (``now +
TTL`` at grant or keep-alive). The first call that sees a new term *promotes* the timer: every
live lease gets the deadline ``now + extend + remaining``, where ``remaining`` is the lease's
checkpointed remaining TTL if the old leader checkpointed one, else its granted TTL (etcd's
Promote and lease checkpointing, #9888: a leader change extends leases rather than expiring
them early, and does not restart a dead client's TTL either). A call that sees authority 0 (or
another term) first forgets all deadlines (*demote*). ``expired()`` lists leases whose deadline
passed; the server confirms leadership with a quorum before it proposes their revokes (see
``CoordServer.expire_leases``). ``renew`` and ``remaining`` raise LeaderChangedError when this
member is not the authority, so a keep-alive is never answered from a stale timer.
``checkpoints()`` lists the remaining TTLs the leader replicates every checkpoint interval. The
clock is injected, so tests drive time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from coord.errors import LeaderChangedError

from .lessor import Lessor

__all__ = ["LeaseTimer", "min_lease_ttl"]

#: A revoke proposed for an expired lease is retried after this many seconds if still alive.
RETRY_REVOKE_AFTER = 2.0


def min_lease_ttl(election_timeout_ms: int) -> int:
    """etcd's minimum lease TTL: ceil(1.5 x election timeout) in seconds (2 s by default)."""
    return max(1, math.ceil(1.5 * election_timeout_ms / 1000.0))


class LeaseTimer:
    """Deadlines of live leases while this member is the leader that may decide expiry."""

    def __init__(
        self,
        lessor: Lessor,
        clock: Callable[[], float],
        authority: Callable[[], int],
        extend: float,
    ) -> None:
        self._lessor = lessor
        self._clock = clock
        self._authority = authority
        self._extend = extend
        self._term = 0  # the leader term the deadlines belong to; 0: not the authority
        self.renewed = 0  # keep-alives that renewed a lease (etcd_debugging_lease_renewed_total)
        self.revoked_expired = (
            0  # expired leases revoked (etcd_debugging_server_lease_expired_total)
        )
        self._deadline: dict[int, float] = {}
        self._revoking: dict[int, float] = {}
        lessor.add_listener(self._granted, self._revoked)

    # -- authority -----------------------------------------------------------------------------

    def _sync(self) -> bool:
        """Follow the authority's term (promote or demote); True while this member is it."""
        term = self._authority()
        if term != self._term:
            self._deadline.clear()
            self._revoking.clear()
            self._term = term
            if term:
                now = self._clock()
                self._deadline = {
                    i: now + self._extend + self._lessor.remaining(i)
                    for i, _ttl in self._lessor.items()
                }
        return self._term != 0

    @property
    def active(self) -> bool:
        """True while this member may decide renewal and expiry (the Raft state, now)."""
        return self._sync()

    @property
    def term(self) -> int:
        """The leader term this member may act for now (0: none)."""
        self._sync()
        return self._term

    # -- lessor listener -----------------------------------------------------------------------

    def _granted(self, lease_id: int, ttl: int) -> None:
        if self._sync():
            self._deadline[lease_id] = self._clock() + ttl

    def _revoked(self, lease_id: int) -> None:
        self._deadline.pop(lease_id, None)
        self._revoking.pop(lease_id, None)

    # -- leader operations ---------------------------------------------------------------------

    def renew(self, lease_id: int) -> int:
        """Keep-alive: reset the deadline; returns the granted TTL, 0 if unknown or expired.

        Raises:
            LeaderChangedError: this member is not the leader that decides expiry now.
        """
        if not self._sync():
            raise LeaderChangedError()
        ttl = self._lessor.ttl(lease_id)
        if ttl is None:
            return 0
        now = self._clock()
        if self._deadline.get(lease_id, math.inf) <= now:
            return 0
        self._deadline[lease_id] = now + ttl
        self.renewed += 1
        return ttl

    def remaining(self, lease_id: int) -> int:
        """Whole seconds left (truncated), -1 for an unknown lease, 0 once expired.

        Raises:
            LeaderChangedError: this member is not the leader that decides expiry now.
        """
        if not self._sync():
            raise LeaderChangedError()
        ttl = self._lessor.ttl(lease_id)
        if ttl is None:
            return -1
        if lease_id not in self._deadline:
            return ttl
        return max(0, int(self._deadline[lease_id] - self._clock()))

    def expired(self) -> list[int]:
        """Leases past their deadline that need a revoke proposal (each returned once per
        RETRY_REVOKE_AFTER seconds until the revoke is applied); [] when not the authority."""
        if not self._sync():
            return []
        now = self._clock()
        out = []
        for lease_id, deadline in self._deadline.items():
            if deadline <= now and self._revoking.get(lease_id, -math.inf) <= now:
                out.append(lease_id)
        for lease_id in out:
            self._revoking[lease_id] = now + RETRY_REVOKE_AFTER
        return sorted(out)

    def is_expired(self, lease_id: int) -> bool:
        """True if this member is the authority and ``lease_id``'s deadline has passed (a
        renew since :meth:`expired` listed it makes this False again)."""
        if not self._sync():
            return False
        return self._deadline.get(lease_id, math.inf) <= self._clock()

    def checkpoints(self) -> list[tuple[int, int]]:
        """(id, remaining whole seconds, at least 1) of every live lease whose remaining TTL is
        below its granted TTL: what the leader replicates as a lease checkpoint. [] when not
        the authority."""
        if not self._sync():
            return []
        now = self._clock()
        out = []
        for lease_id, deadline in sorted(self._deadline.items()):
            ttl = self._lessor.ttl(lease_id)
            left = max(1, math.ceil(deadline - now))
            if ttl is not None and left < ttl:
                out.append((lease_id, left))
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline, None when there is none."""
        self._sync()
        return min(self._deadline.values(), default=None)

    def _check(self) -> None:
        if not self._term:
            assert not self._deadline
            assert not self._revoking
        for lease_id in self._deadline:
            assert self._lessor.exists(lease_id), lease_id
        for lease_id in self._revoking:
            assert lease_id in self._deadline, lease_id
