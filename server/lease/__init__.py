"""Leases: replicated lease state (:class:`Lessor`), leader-side expiry (:class:`LeaseTimer`)
and proposer-side ID allocation (:class:`LeaseIdGenerator`)."""

from .ids import LeaseIdGenerator
from .lessor import MAX_LEASE_TTL, Lessor
from .timer import LeaseTimer, min_lease_ttl

__all__ = ["MAX_LEASE_TTL", "LeaseIdGenerator", "LeaseTimer", "Lessor", "min_lease_ttl"]
