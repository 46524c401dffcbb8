"""Leader-only lease requests on followers: forwarded to the leader over the peer transport.

Theory of operation: lease deadlines live only in the leader's :class:`LeaseTimer` (expiry is
the leader's decision, architecture rule 4), so a LeaseKeepAlive or LeaseTimeToLive that reaches a
follower must be answered by the leader.  :class:`ForwardingLeaseService` is the API layer's
:class:`~coord.server.api.lease.LeaseService` with those two calls routed through
:meth:`Node.leader_call` (a CALL frame on the peer's kept call connection; a direct call
when this member leads).  :func:`register_lease_calls` installs the leader side, which is
:meth:`LeaseService.renew_here` / :meth:`LeaseService.remaining_here`: each forwarded request
carries the follower's applied index as its read point, and the leader answers only once it
has applied that far (and, for a renew, confirmed its leadership with a quorum).

A forwarded renew gives up after half the lease's remaining time as this member knows it
(from the last TTL the leader confirmed through it; the granted TTL before that), not after
the request timeout: against a stalled leader the client then retries (a new leader, another
member) while the lease is still alive, with the other half left for that.  Everything else
(grant, revoke, leases) is a proposal or a read and needs no forwarding.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

from coord.server.lease import LeaseTimer

from .common import ApiContext
from .lease import LeaseService

if TYPE_CHECKING:
    from coord.server.node.protocol import Node

__all__ = ["ForwardingLeaseService", "register_lease_calls"]

_I64 = struct.Struct(">q")
_REQ = struct.Struct(">qq")  # lease id, the sender's applied index (the read point)
RENEW = "lease.renew"
REMAINING = "lease.remaining"
#: A forwarded renew is given at least this long, however little of the lease seems left.
MIN_FORWARD_TIMEOUT = 0.5


def register_lease_calls(node: Node, service: LeaseService) -> None:
    """Serve forwarded keep-alives and remaining-TTL queries with ``service`` on the leader."""

    async def renew(body: bytes) -> bytes:
        lease_id, read_index = _REQ.unpack(body)
        return _I64.pack(await service.renew_here(lease_id, read_index))

    async def remaining(body: bytes) -> bytes:
        lease_id, read_index = _REQ.unpack(body)
        return _I64.pack(await service.remaining_here(lease_id, read_index))

    node.register_call(RENEW, renew)
    node.register_call(REMAINING, remaining)


class ForwardingLeaseService(LeaseService):
    """LeaseService whose keep-alive and TTL queries always reach the leader's timer."""

    def __init__(self, ctx: ApiContext, timer: LeaseTimer, node: Node) -> None:
        super().__init__(ctx, timer)
        self.node = node
        self._confirmed: dict[int, float] = {}  # lease id -> deadline the leader confirmed
        register_lease_calls(node, self)

    def _forward_timeout(self, lease_id: int, now: float) -> float:
        deadline = self._confirmed.get(lease_id)
        granted = float(self.ctx.sm.lessor.ttl(lease_id) or 0)
        left = granted if deadline is None else deadline - now
        return max(MIN_FORWARD_TIMEOUT, min(self.node.request_timeout, left / 2))

    async def _renew(self, lease_id: int) -> int:
        if self.node.is_leader():
            return await self.renew_here(lease_id, self.node.applied_index())
        sent = time.monotonic()
        body = _REQ.pack(lease_id, self.node.applied_index())
        answer = await self.node.leader_call(
            RENEW, body, timeout=self._forward_timeout(lease_id, sent)
        )
        ttl = int(_I64.unpack(answer)[0])
        if ttl > 0:
            self._confirmed[lease_id] = sent + ttl
        else:
            self._confirmed.pop(lease_id, None)
        if len(self._confirmed) > 1024:  # forget leases whose confirmed time ran out
            self._confirmed = {i: d for i, d in self._confirmed.items() if d > sent}
        return ttl

    async def _remaining(self, lease_id: int) -> int:
        if self.node.is_leader():
            return await self.remaining_here(lease_id, self.node.applied_index())
        body = _REQ.pack(lease_id, self.node.applied_index())
        return int(_I64.unpack(await self.node.leader_call(REMAINING, body))[0])
