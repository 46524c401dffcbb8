"""Lease safety: no key is deleted while its lease's keep-alives were being confirmed.

Theory of operation
-------------------
A keep-alive sent at ``t`` that returned TTL ``T > 0`` promises the lease lives until at least
``t + T`` (the leader refreshed it after ``t``). Inputs: the probes' leases (lease ID, key,
grant send time and TTL), their keep-alives (send time, answer time, TTL) and the earliest
time any watcher observed each key's deletion. Violations:

* *early deletion*: a key's deletion was observed at ``d < t + T - slack`` for some confirmed
  keep-alive (or for the grant itself: ``d < grant_sent + granted_ttl - slack``);
* *alive after revoke*: a keep-alive sent after the deletion was observed returned ``T > 0``;
* *live lease reported lost*: a keep-alive returned TTL 0 at ``r`` although an earlier
  confirmation promised the lease until later than ``r + slack``; or it returned TTL 0 (at any
  time) but the key's deletion was observed more than ``LOST_GRACE`` after that answer. A
  leader answers TTL 0 for a lease it knows only once the lease's revoke is applied, so its
  deletion is already committed when the answer leaves; a deletion seen much later means
  the cluster kept the lease alive (bug 4 of docs/chaos.md: a leader paused past a deadline
  that the next leader had extended).

A keep-alive is judged by its answer time, not its send time: it may wait in a SIGSTOPped
member until after the lease's deadline, and then TTL 0 is the right answer (the lease really
expired: no keep-alive reached the leader in time). Observation times are later than the real
deletion, so the early-deletion check can only miss violations, never invent them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .workloads import KeepAlive, LeaseRecord

__all__ = ["LeaseResult", "check_leases"]

SLACK = 0.25
#: How long after a TTL 0 answer the lease's key deletion may still be seen first.
LOST_GRACE = 1.0


@dataclass
class LeaseResult:
    leases: int = 0
    keepalives: int = 0
    deletions: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        head = (
            f"lease safety: {self.leases} leases, {self.keepalives} keep-alives, "
            f"{self.deletions} deletions observed, {len(self.violations)} violations"
        )
        return "\n".join([head, *(f"  {v}" for v in self.violations[:20])])


def check_leases(
    leases: Sequence[LeaseRecord],
    keepalives: Sequence[KeepAlive],
    deleted_at: dict[str, float],
    slack: float = SLACK,
) -> LeaseResult:
    res = LeaseResult(len(leases), len(keepalives))
    by_lease: dict[int, list[KeepAlive]] = {}
    for ka in keepalives:
        by_lease.setdefault(ka.lease, []).append(ka)
    for rec in leases:
        kas = sorted(by_lease.get(rec.lease, []), key=lambda k: k.sent)
        # promised: the lease lives until at least this time
        promised = rec.grant_sent + rec.granted_ttl
        d = deleted_at.get(rec.key)
        for ka in kas:
            if ka.ttl == 0 and ka.received + slack < promised:
                res.violations.append(
                    f"live lease reported lost: lease {rec.lease:x} keep-alive sent at "
                    f"{ka.sent:.3f} returned TTL 0 at {ka.received:.3f}, but it was confirmed "
                    f"alive until {promised:.3f}"
                )
            elif ka.ttl == 0 and d is not None and d > ka.received + LOST_GRACE:
                res.violations.append(
                    f"live lease reported lost: lease {rec.lease:x} keep-alive sent at "
                    f"{ka.sent:.3f} returned TTL 0 at {ka.received:.3f}, but {rec.key} was "
                    f"deleted only later, observed at {d:.3f}"
                )
            if ka.ttl > 0:
                promised = max(promised, ka.sent + ka.ttl)
        if d is None:
            continue
        res.deletions += 1
        if d + slack < promised:
            res.violations.append(
                f"early deletion: {rec.key} (lease {rec.lease:x}) deleted, observed at "
                f"{d:.3f}, while confirmed alive until {promised:.3f} "
                f"({promised - d:.3f}s early)"
            )
        for ka in kas:
            if ka.ttl > 0 and ka.sent > d + slack:
                res.violations.append(
                    f"alive after revoke: lease {rec.lease:x} keep-alive sent at {ka.sent:.3f} "
                    f"returned TTL {ka.ttl} after {rec.key}'s deletion was observed at {d:.3f}"
                )
    return res
