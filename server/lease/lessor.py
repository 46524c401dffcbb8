"""The replicated part of leases: which leases exist, their granted TTLs and checkpoints.

Theory of operation: the Lessor is state-machine state, changed only by applied commands
(LEASE_GRANT, LEASE_REVOKE, LEASE_CHECKPOINT), so it is identical on every member and goes into
snapshots. A checkpoint records a lease's remaining TTL as the leader last replicated it (etcd's
lease checkpointing, #9888): a new leader's timer starts the lease from it instead of from the
full granted TTL; a checkpoint of 0 (or none) means "the full TTL" (a renew clears it).
It knows nothing about time: expiry is decided by the leader's :class:`LeaseTimer`, which
proposes LEASE_REVOKE. Keys attached to a lease are tracked by the KV store (each key's
``lease`` field; ``KVStore.keys_for_lease``), so there is a single source of truth for them.
Listeners (the timer) hear about grants and revokes as they are applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from coord.errors import LeaseExistsError, LeaseNotFoundError

__all__ = ["MAX_LEASE_TTL", "Lessor"]

#: etcd's MaxLeaseTTL (seconds); larger requests fail with LeaseTTLTooLargeError.
MAX_LEASE_TTL = 9_000_000_000

GrantListener = Callable[[int, int], None]
RevokeListener = Callable[[int], None]


class Lessor:
    """Lease IDs and their granted TTLs (seconds)."""

    def __init__(self) -> None:
        self._ttls: dict[int, int] = {}
        self._remaining: dict[int, int] = {}  # checkpointed remaining TTLs (0 < r < ttl)
        self._on_grant: list[GrantListener] = []
        self._on_revoke: list[RevokeListener] = []

    def add_listener(self, on_grant: GrantListener, on_revoke: RevokeListener) -> None:
        """Call ``on_grant(id, ttl)`` / ``on_revoke(id)`` after each applied grant / revoke."""
        self._on_grant.append(on_grant)
        self._on_revoke.append(on_revoke)

    def grant(self, lease_id: int, ttl: int) -> None:
        """Create lease ``lease_id``; LeaseExistsError if it exists."""
        if lease_id in self._ttls:
            raise LeaseExistsError()
        self._ttls[lease_id] = ttl
        for cb in self._on_grant:
            cb(lease_id, ttl)

    def revoke(self, lease_id: int) -> None:
        """Forget lease ``lease_id`` (the caller deletes its keys); LeaseNotFoundError if absent."""
        if self._ttls.pop(lease_id, None) is None:
            raise LeaseNotFoundError()
        self._remaining.pop(lease_id, None)
        for cb in self._on_revoke:
            cb(lease_id)

    def checkpoint(self, lease_id: int, remaining: int) -> None:
        """Record ``remaining`` seconds for ``lease_id`` (0 clears; ignored for an unknown
        lease, which an earlier revoke may have removed)."""
        ttl = self._ttls.get(lease_id)
        if ttl is None:
            return
        if 0 < remaining < ttl:
            self._remaining[lease_id] = remaining
        else:
            self._remaining.pop(lease_id, None)

    def remaining(self, lease_id: int) -> int:
        """The checkpointed remaining TTL, else the granted TTL (0 for an unknown lease)."""
        return self._remaining.get(lease_id, self._ttls.get(lease_id, 0))

    def checkpointed(self, lease_id: int) -> bool:
        """True if a checkpoint (a remaining TTL below the granted one) is recorded."""
        return lease_id in self._remaining

    def exists(self, lease_id: int) -> bool:
        """True if the lease exists."""
        return lease_id in self._ttls

    def ttl(self, lease_id: int) -> int | None:
        """The granted TTL, None for an unknown lease."""
        return self._ttls.get(lease_id)

    def items(self) -> Iterator[tuple[int, int]]:
        """(id, granted TTL) pairs in ID order."""
        return iter(sorted(self._ttls.items()))

    def __len__(self) -> int:
        return len(self._ttls)

    def snapshot(self) -> list[tuple[int, int, int]]:
        """Plain data for the state-machine snapshot: (id, granted TTL, checkpoint or 0)."""
        return [(i, t, self._remaining.get(i, 0)) for i, t in sorted(self._ttls.items())]

    def restore(self, data: list[list[int]]) -> None:
        """Replace the state with a snapshot's (listeners hear revokes then grants); entries
        are (id, ttl) or (id, ttl, checkpoint)."""
        for lease_id in list(self._ttls):
            self.revoke(lease_id)
        for row in data:
            lease_id, ttl = int(row[0]), int(row[1])
            self.grant(lease_id, ttl)
            if len(row) > 2:
                self.checkpoint(lease_id, int(row[2]))

    def _check(self) -> None:
        for lease_id, ttl in self._ttls.items():
            assert lease_id != 0
            assert -(1 << 63) <= lease_id < (1 << 63), lease_id
            assert 0 < ttl <= MAX_LEASE_TTL, (lease_id, ttl)
        for lease_id, left in self._remaining.items():
            assert 0 < left < self._ttls[lease_id], (lease_id, left)
