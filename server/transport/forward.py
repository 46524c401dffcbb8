"""Leader-only lease requests on followers: forwarded to the leader over the peer transport.

Theory of operation: lease deadlines live only in the leader's :class:`LeaseTimer` (expiry is
the leader's decision, DESIGN rule 4), so a LeaseKeepAlive or LeaseTimeToLive that reaches a
follower must be answered by the leader.  :class:`ForwardingLeaseService` is the API layer's
:class:`~coord.server.api.lease.LeaseService` with those two calls routed through
:meth:`RaftNode.leader_call` (a CALL frame on a short-lived peer connection; a direct call when
this member leads).  :func:`register_lease_calls` installs the leader side.  Everything else
(grant, revoke, leases) is a proposal or a read and needs no forwarding.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from coord.server.api.common import ApiContext
from coord.server.api.lease import LeaseService
from coord.server.lease import LeaseTimer

if TYPE_CHECKING:
    from coord.server.node import RaftNode

__all__ = ["ForwardingLeaseService", "register_lease_calls"]

_I64 = struct.Struct(">q")
RENEW = "lease.renew"
REMAINING = "lease.remaining"


def register_lease_calls(node: RaftNode, timer: LeaseTimer) -> None:
    """Serve forwarded keep-alives and remaining-TTL queries from ``timer`` on the leader."""
    node.register_call(RENEW, lambda b: _I64.pack(timer.renew(_I64.unpack(b)[0])))
    node.register_call(REMAINING, lambda b: _I64.pack(timer.remaining(_I64.unpack(b)[0])))


class ForwardingLeaseService(LeaseService):
    """LeaseService whose keep-alive and TTL queries always reach the leader's timer."""

    def __init__(self, ctx: ApiContext, timer: LeaseTimer, node: RaftNode) -> None:
        super().__init__(ctx, timer)
        self.node = node

    async def _renew(self, lease_id: int) -> int:
        if self.node.is_leader():
            return self.timer.renew(lease_id)
        return int(_I64.unpack(await self.node.leader_call(RENEW, _I64.pack(lease_id)))[0])

    async def _remaining(self, lease_id: int) -> int:
        if self.node.is_leader():
            return self.timer.remaining(lease_id)
        return int(_I64.unpack(await self.node.leader_call(REMAINING, _I64.pack(lease_id)))[0])

