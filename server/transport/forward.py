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

from coord._pb import etcdserverpb as pb
from coord.errors import CoordError
from coord.server.api.common import RawStream, parse, recv_frame, to_grpc_error
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

    def __init__(self, ctx: object, timer: LeaseTimer, node: RaftNode) -> None:
        super().__init__(ctx, timer)  # type: ignore[arg-type]
        self.node = node

    async def _renew(self, lease_id: int) -> int:
        if self.node.is_leader():
            return self.timer.renew(lease_id)
        return int(_I64.unpack(await self.node.leader_call(RENEW, _I64.pack(lease_id)))[0])

    async def _remaining(self, lease_id: int) -> int:
        if self.node.is_leader():
            return self.timer.remaining(lease_id)
        return int(_I64.unpack(await self.node.leader_call(REMAINING, _I64.pack(lease_id)))[0])

    async def _keep_alive_loop(self, stream: RawStream) -> None:
        """LeaseKeepAlive's loop: one response per request, TTL from the leader's timer."""
        ctx = self.ctx
        try:
            while True:
                data = await recv_frame(stream, ctx.recv_limit)
                if data is None:
                    return
                req = parse(pb.LeaseKeepAliveRequest, data)
                head = ctx.header_bytes(ctx.sm.kv.rev)
                ttl = await self._renew(req.id)
                await stream.send_message(head + bytes(pb.LeaseKeepAliveResponse(id=req.id,
                                                                                 ttl=ttl)))
        except CoordError as e:
            raise to_grpc_error(e) from None

    async def time_to_live(self, stream: RawStream, data: bytes) -> bytes:
        """LeaseTimeToLive: remaining whole seconds (from the leader), -1 for unknown leases."""
        req = parse(pb.LeaseTimeToLiveRequest, data)
        ctx = self.ctx
        await ctx.node.read_index()
        granted = ctx.sm.lessor.ttl(req.id)
        if granted is None:
            resp = pb.LeaseTimeToLiveResponse(id=req.id, ttl=-1)
        else:
            keys = ctx.sm.kv.keys_for_lease(req.id) if req.keys else []
            resp = pb.LeaseTimeToLiveResponse(id=req.id, ttl=await self._remaining(req.id),
                                              granted_ttl=granted, keys=list(keys))
        return ctx.current(bytes(resp))
