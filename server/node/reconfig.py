"""Reconfiguration: conf changes, MemberAdd/Remove/Promote/Update and leader transfer.

Theory of operation: a membership change is a Raft conf change whose context is a
:class:`~coord.server.membership.ChangeContext` (the proposer's member id and sequence number,
as a proposal's envelope, plus the member record); the proposer's waiter resolves when it
applies the entry.  A conf change is refused by Raft while another is pending: it is retried
for up to the request timeout ("unhealthy cluster" after that).  Applying one updates Raft's
configuration, the member list and the transport's peers; a member that applies its own
removal stops (:mod:`.driver`), and a removed peer's inbound connection is dropped so that it
reconnects, is refused and learns that it was removed.  Only the leader knows a learner's
progress, so a promotion asks it (a leader call, :data:`LEARNER_READY`): a learner is ready
when its match index is at least 90% of the leader's (etcd's isLearnerReady).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio

from coord.errors import (
    BadLeaderTransfereeError,
    CoordError,
    LearnerNotReadyError,
    MemberNotFoundError,
    MemberNotLearnerError,
    NotLeaderError,
    PeerURLExistsError,
    RequestTimeoutError,
    ServerStoppedError,
    UnhealthyClusterError,
)
from coord.server.membership import (
    ChangeContext,
    Member,
    MemberInfo,
    compute_member_id,
    decode_context,
    encode_context,
)
from coord.server.raft.confchange_codec import decode_conf_change
from coord.server.raft.errors import ProposalDropped
from coord.server.raft.types import ConfChange, ConfChangeType, ConfChangeV2, Entry
from coord.server.urls import parse_url

from .state import NodeState
from .waiter import Waiter

__all__ = ["LEARNER_READY", "LEARNER_READY_PERCENT", "Reconfig"]

log = logging.getLogger("coord.server.node")

#: Forwarded leader call: is this learner in sync (etcd's isLearnerReady)?
LEARNER_READY = "learner-ready"
#: A learner is in sync when its match index is at least this share of the leader's.
LEARNER_READY_PERCENT = 0.9


class Reconfig(NodeState):
    """Membership changes (see the module docstring)."""

    def _learner_ready_call(self, body: bytes) -> bytes:
        """The leader side of :data:`LEARNER_READY`."""
        return b"\x01" if self._learner_ready(int.from_bytes(body, "big")) else b"\x00"

    async def _propose_conf(self, cc: ConfChange) -> None:
        if not self._running:
            raise ServerStoppedError()
        seq = decode_context(cc.context).seq
        waiter: Waiter[Any] = Waiter()
        self._pending[seq] = waiter
        lead = self._lead
        try:
            deadline = time.monotonic() + self.request_timeout
            while True:  # a conf change is refused while another is pending: retry a while
                lead = self._lead
                try:
                    self.rawnode.propose_conf_change(cc)
                    break
                except ProposalDropped as e:
                    if not self._lead:
                        raise self._proposal_error(e, lead) from None
                    if time.monotonic() > deadline:
                        raise UnhealthyClusterError(
                            f"etcdserver: unhealthy cluster ({e})"
                        ) from None
                    await anyio.sleep(self.tick_interval)
            self._wake.set()
            with anyio.fail_after(max(0.1, deadline - time.monotonic())):
                result = await waiter.wait()
        except TimeoutError:
            raise self._proposal_error(None, lead) from None
        finally:
            self._pending.pop(seq, None)
        if isinstance(result, CoordError):
            raise result

    def _conf(self, typ: ConfChangeType, member: Member) -> ConfChange:
        seq = self._next_seq()
        return ConfChange(
            typ, member.id, encode_context(ChangeContext(self.member_id, seq, member))
        )

    async def add_member(self, peer_urls: Sequence[str], is_learner: bool) -> MemberInfo:
        """MemberAdd (optionally as a learner)."""
        urls = sorted(peer_urls)
        for u in urls:
            parse_url(u)
        if self.membership.peer_url_taken(urls):
            raise PeerURLExistsError()
        member = Member(
            id=compute_member_id(urls, self.config.initial_cluster_token, int(time.time())),
            peer_urls=urls,
            is_learner=is_learner,
        )
        typ = ConfChangeType.ADD_LEARNER_NODE if is_learner else ConfChangeType.ADD_NODE
        await self._propose_conf(self._conf(typ, member))
        return member.info()

    async def remove_member(self, member_id: int) -> None:
        """MemberRemove (the leader may remove itself: it steps down and stops)."""
        m = self.membership.members.get(member_id)
        if m is None:
            raise MemberNotFoundError()
        await self._propose_conf(self._conf(ConfChangeType.REMOVE_NODE, Member(id=member_id)))

    async def promote_member(self, member_id: int) -> None:
        """MemberPromote: a learner in sync with the leader becomes a voter
        (LearnerNotReadyError otherwise)."""
        m = self.membership.members.get(member_id)
        if m is None:
            raise MemberNotFoundError()
        if not m.is_learner:
            raise MemberNotLearnerError()
        if self.is_leader():
            ready = self._learner_ready(member_id)
        else:  # only the leader knows the learner's progress (etcd forwards to the leader too)
            ready = await self.leader_call(LEARNER_READY, member_id.to_bytes(8, "big")) == b"\x01"
        if not ready:
            raise LearnerNotReadyError()
        await self._propose_conf(self._conf(ConfChangeType.ADD_NODE, Member(id=member_id)))

    def _learner_ready(self, member_id: int) -> bool:
        """On the leader: the learner's match index is >= 90% of the leader's (etcd's rule;
        a member without progress, e.g. just applied, counts as ready as in etcd)."""
        progress = self.rawnode.status().progress
        learner, leader = progress.get(member_id), progress.get(self.member_id)
        if learner is None or leader is None:
            return True
        return learner.match >= leader.match * LEARNER_READY_PERCENT

    async def update_member(self, member_id: int, peer_urls: Sequence[str]) -> None:
        """MemberUpdate: change a member's peer URLs."""
        m = self.membership.members.get(member_id)
        if m is None:
            raise MemberNotFoundError()
        urls = sorted(peer_urls)
        for u in urls:
            parse_url(u)
        if self.membership.peer_url_taken(urls, except_id=member_id):
            raise PeerURLExistsError()
        new = Member(
            id=member_id,
            name=m.name,
            peer_urls=urls,
            client_urls=m.client_urls,
            is_learner=m.is_learner,
        )
        await self._propose_conf(self._conf(ConfChangeType.UPDATE_NODE, new))

    async def transfer_leader(self, target_id: int) -> None:
        """MoveLeader: must run on the leader; waits until ``target_id`` leads."""
        if not self.is_leader():
            raise NotLeaderError()
        m = self.membership.members.get(target_id)
        if m is None or m.is_learner:
            raise BadLeaderTransfereeError()
        if target_id == self.member_id:
            return
        self.rawnode.transfer_leader(target_id)
        self._wake.set()
        with anyio.move_on_after(self.request_timeout):
            while self._lead != target_id:
                await anyio.sleep(self.tick_interval)
            return
        raise RequestTimeoutError("etcdserver: request timed out, leader transfer took too long")

    def _apply_conf_change(self, e: Entry) -> None:
        cc = decode_conf_change(e.data)
        changes = cc.changes if isinstance(cc, ConfChangeV2) else [cc]
        error: CoordError | None = None
        try:
            self._conf_state = self.rawnode.apply_conf_change(cc)
        except ValueError as err:
            log.warning("conf change at %d rejected: %s", e.index, err)
            error = UnhealthyClusterError(f"etcdserver: invalid conf change: {err}")
        if error is None:
            for c in changes:
                was = self.membership.members.get(c.node_id)
                self.membership.apply(c)
                now = self.membership.members.get(c.node_id)
                verb = {
                    ConfChangeType.ADD_NODE: "promoted"
                    if was is not None and was.is_learner
                    else "added",
                    ConfChangeType.ADD_LEARNER_NODE: "added learner",
                    ConfChangeType.REMOVE_NODE: "removed",
                    ConfChangeType.UPDATE_NODE: "updated",
                }.get(c.type, str(c.type))
                member = now if now is not None else was
                log.info(
                    "membership: %s member %x (peer URLs %s) at index %d",
                    verb,
                    c.node_id,
                    ",".join(member.peer_urls) if member is not None else "-",
                    e.index,
                )
                if c.type == ConfChangeType.REMOVE_NODE and c.node_id == self.member_id:
                    log.warning(
                        "this member (%x) was removed from the cluster; stopping", self.member_id
                    )
                    self._removed = True
                elif c.type == ConfChangeType.REMOVE_NODE and self._tg is not None:
                    # make it reconnect, be refused and learn that it was removed
                    self._tg.start_soon(self.transport.drop_inbound, c.node_id)
            self.transport.set_peers(self.membership.peer_urls())
        for c in changes:
            if c.context:
                ctx = decode_context(c.context)
                if ctx.proposer == self.member_id:
                    self._resolve(ctx.seq, error if error is not None else b"")
