"""etcdserverpb.Lease: grant, revoke, keep-alive stream, time-to-live, list.

Theory of operation: grants and revokes are commands (the lease ID and the effective TTL are
chosen here, on the proposer: ID from :class:`LeaseIdGenerator` when the client sent 0, TTL
raised to the minimum). Keep-alives and remaining TTLs are leader-local timer state
(:class:`LeaseTimer`), never replicated. Unknown or expired leases answer TTL 0 on keep-alive
and TTL -1 on TimeToLive, as etcd does (not errors). Only the leader's timer decides expiry, so
on a follower the hooks :meth:`LeaseService._renew` and :meth:`LeaseService._remaining` must
reach the leader: the replicated server overrides them (coord.server.api.forward); this
class alone serves a member that always leads.

The leader answers a keep-alive (:meth:`LeaseService.renew_here`, etcd's LeaseRenew on the
leader) only after (1) a quorum confirmed that it still leads the term its timer acts for
(etcd's ensureLeadership, #15247 / PR #16822: a leader stalled on its disk cannot confirm and
answers an error, after at most half the lease's remaining time, so the client retries
elsewhere in time), and (2) it has applied at least the read
point the request came with (the forwarding follower's applied index, and its own commit index:
etcd's waitAppliedIndex, #6978 / #13690), so a lease the client saw granted is never reported
unknown. If the lease carries a checkpoint, the renew replicates its clearing before it
answers (etcd's Renew clears remainingTTL), so a later leader does not start it from the old
remaining TTL. A TTL > 0 therefore means the lease is alive on the current leader. A lease
whose deadline passed but whose revoke is not applied yet gets TTL 0 only once the revoke is
applied; if this member stops leading first, the renew fails and the client retries elsewhere
(etcd's Renew waits the same way), so a leader paused past a deadline never reports lost a
lease that the next leader extended.

A keep-alive stream opened with ``hasleader: true`` (as clientv3 always does) ends with
``etcdserver: no leader`` once this member loses its leader, as etcd cancels such streams
(Watch does the same).
"""

from __future__ import annotations

import time

import anyio
from grpclib.const import Cardinality, Handler

from coord._pb import etcdserverpb as pb
from coord.errors import (
    CoordError,
    LeaderChangedError,
    LeaseTTLTooLargeError,
    NoLeaderError,
    RequestTimeoutError,
)
from coord.server.command import Kind, encode
from coord.server.lease import MAX_LEASE_TTL, LeaseIdGenerator, LeaseTimer

from .common import (
    ApiContext,
    RawStream,
    handler,
    parse,
    raise_first,
    recv_frame,
    send_response,
    to_grpc_error,
    unary_handlers,
)

__all__ = ["LeaseService"]

_GRANT_COST = 64
#: How often a ``hasleader`` keep-alive stream checks that the member still knows a leader.
LEADER_CHECK_INTERVAL = 1.0
#: How long a renew waits for the leader's applied index (etcd's applyTimeout).
APPLY_WAIT = 1.0
#: A renew waits at least this long for a quorum to confirm leadership.
MIN_CONFIRM_WAIT = 0.5
#: How often a renew of an expired lease looks whether its revoke was applied.
REVOKE_POLL = 0.05


class LeaseService:
    """The Lease service."""

    def __init__(self, ctx: ApiContext, timer: LeaseTimer) -> None:
        self.ctx = ctx
        self.timer = timer
        self.ids = LeaseIdGenerator(ctx.node.member_id, lambda: int(time.time() * 1000))
        #: how long a renew waits for a quorum to confirm leadership (etcd: ReqTimeout)
        self.confirm_timeout = ctx.config.request_timeout

    async def grant(self, stream: RawStream, data: bytes) -> bytes:
        """LeaseGrant: pick ID and effective TTL, then propose."""
        req = parse(pb.LeaseGrantRequest, data)
        ctx = self.ctx
        if req.ttl > MAX_LEASE_TTL:
            raise LeaseTTLTooLargeError()
        ttl = max(req.ttl, ctx.config.min_lease_ttl)
        lease_id = req.id or self.ids.next(ctx.sm.lessor.exists)
        await ctx.check_quota(_GRANT_COST)
        rev, body = await ctx.propose(
            Kind.LEASE_GRANT, bytes(pb.LeaseGrantRequest(ttl=ttl, id=lease_id))
        )
        return ctx.response(rev, body)

    async def revoke(self, stream: RawStream, data: bytes) -> bytes:
        """LeaseRevoke: deletes the attached keys in one revision."""
        parse(pb.LeaseRevokeRequest, data)
        rev, _ = await self.ctx.propose(Kind.LEASE_REVOKE, data)
        return self.ctx.response(rev)

    async def keep_alive(self, stream: RawStream) -> None:
        """LeaseKeepAlive: one response per request; ends OK when the client half-closes, with
        ``etcdserver: no leader`` when it requires a leader and this member loses it."""
        ctx = self.ctx
        try:
            ctx.check_leader(stream)
            ctx.guard.authorize(stream, "/etcdserverpb.Lease/LeaseKeepAlive", b"")
        except CoordError as e:
            raise to_grpc_error(e) from None
        if not ctx.requires_leader(stream):
            await self._keep_alive_loop(stream)
            return
        lost = False
        try:
            async with anyio.create_task_group() as tg:

                async def watchdog() -> None:
                    nonlocal lost
                    await ctx.until_leader_lost(LEADER_CHECK_INTERVAL)
                    lost = True
                    tg.cancel_scope.cancel()

                tg.start_soon(watchdog)
                await self._keep_alive_loop(stream)
                tg.cancel_scope.cancel()
        except* Exception as eg:
            raise_first(eg)
        if lost:
            raise to_grpc_error(NoLeaderError())

    async def _keep_alive_loop(self, stream: RawStream) -> None:
        ctx = self.ctx
        try:
            while True:
                data = await recv_frame(stream, ctx.recv_limit)
                if data is None:
                    return
                req = parse(pb.LeaseKeepAliveRequest, data)
                head = ctx.header_bytes(ctx.sm.kv.rev)
                ttl = await self._renew(req.id)
                await send_response(
                    stream, head + bytes(pb.LeaseKeepAliveResponse(id=req.id, ttl=ttl))
                )
        except CoordError as e:
            raise to_grpc_error(e) from None

    async def _renew(self, lease_id: int) -> int:
        """Renew ``lease_id`` on the leader's timer; its TTL, 0 if unknown."""
        return await self.renew_here(lease_id, self.ctx.node.applied_index())

    async def _remaining(self, lease_id: int) -> int:
        """Remaining whole seconds of ``lease_id`` on the leader's timer."""
        return await self.remaining_here(lease_id, self.ctx.node.applied_index())

    async def _wait_applied(self, read_index: int) -> None:
        node = self.ctx.node
        if not await node.wait_applied(max(read_index, node.commit_index()), APPLY_WAIT):
            raise RequestTimeoutError(
                "etcdserver: request timed out, waiting for the applied index took too long"
            )

    async def renew_here(self, lease_id: int, read_index: int) -> int:
        """The leader's side of a keep-alive (see the module docstring); ``read_index`` is
        the requesting member's applied index.

        Raises:
            LeaderChangedError: this member is not (or could not confirm that it is) the
                leader deciding expiry now.
            RequestTimeoutError: the applied index did not reach the read point in time.
        """
        node = self.ctx.node
        term = self.timer.term
        if not term:
            raise LeaderChangedError()
        # give up within half the time the lease has left, so its client can retry elsewhere
        left = self.timer.remaining(lease_id)
        timeout = self.confirm_timeout if left < 0 else max(MIN_CONFIRM_WAIT, left / 2)
        if not await node.confirm_leadership(term, min(timeout, self.confirm_timeout)):
            raise LeaderChangedError()
        await self._wait_applied(read_index)
        ttl = self.timer.renew(lease_id)  # raises if the term changed meanwhile
        if not ttl and self.ctx.sm.lessor.exists(lease_id):
            await self._wait_revoked(lease_id, term)
            return 0
        if ttl and self.ctx.sm.lessor.checkpointed(lease_id):
            clear = pb.LeaseCheckpointRequest(
                checkpoints=[pb.LeaseCheckpoint(id=lease_id, remaining_TTL=0)]
            )
            await node.propose_as_leader(encode(Kind.LEASE_CHECKPOINT, bytes(clear)), term)
        return ttl

    async def _wait_revoked(self, lease_id: int, term: int) -> None:
        """An expired lease not revoked yet: wait until its revoke is applied, or raise
        LeaderChangedError once this member stops deciding expiry for ``term`` (or after the
        confirm timeout). As etcd's Lessor.Renew (it waits on the lease's revokec or on
        demotion): a leader that was paused past the deadline must not report a lease lost
        that the next leader extends. A rare path, so it polls the lessor."""
        with anyio.move_on_after(self.confirm_timeout):
            while self.ctx.sm.lessor.exists(lease_id):
                if self.timer.term != term:
                    raise LeaderChangedError()
                await anyio.sleep(REVOKE_POLL)
            return
        raise LeaderChangedError()

    async def remaining_here(self, lease_id: int, read_index: int) -> int:
        """The leader's side of TimeToLive: remaining seconds once ``read_index`` is applied."""
        await self._wait_applied(read_index)
        return self.timer.remaining(lease_id)

    async def time_to_live(self, stream: RawStream, data: bytes) -> bytes:
        """LeaseTimeToLive: remaining whole seconds (the leader's timer), -1 for unknown leases."""
        req = parse(pb.LeaseTimeToLiveRequest, data)
        ctx = self.ctx
        await ctx.node.read_index()
        granted = ctx.sm.lessor.ttl(req.id)
        if granted is None:
            resp = pb.LeaseTimeToLiveResponse(id=req.id, ttl=-1)
        else:
            keys = ctx.sm.kv.keys_for_lease(req.id) if req.keys else []
            resp = pb.LeaseTimeToLiveResponse(
                id=req.id, ttl=await self._remaining(req.id), granted_ttl=granted, keys=list(keys)
            )
        return ctx.current(bytes(resp))

    async def leases(self, stream: RawStream, data: bytes) -> bytes:
        """LeaseLeases: every live lease ID."""
        parse(pb.LeaseLeasesRequest, data)
        ctx = self.ctx
        await ctx.node.read_index()
        resp = pb.LeaseLeasesResponse(
            leases=[pb.LeaseStatus(id=i) for i, _ttl in ctx.sm.lessor.items()]
        )
        return ctx.current(bytes(resp))

    def __mapping__(self) -> dict[str, Handler]:
        """grpclib handler table."""
        p = "/etcdserverpb.Lease/"
        table = unary_handlers(
            self.ctx,
            {
                p + "LeaseGrant": self.grant,
                p + "LeaseRevoke": self.revoke,
                p + "LeaseTimeToLive": self.time_to_live,
                p + "LeaseLeases": self.leases,
            },
        )
        table[p + "LeaseKeepAlive"] = handler(self.keep_alive, Cardinality.STREAM_STREAM)
        return table
