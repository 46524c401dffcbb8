"""etcdserverpb.Maintenance (Status, Hash, HashKV, Snapshot, Alarm, Defragment, MoveLeader)
and etcdserverpb.Cluster (member list and changes, delegated to the node).

Theory of operation: reads of member-local state (status, hashes, alarms) are answered from
the node and state machine; alarm activation/deactivation are commands. Snapshot streams the
state as etcd's own backend db (a bbolt file with etcd 3.4's buckets, :mod:`coord.server.backup`)
in etcd's framing: 32 KiB chunks with ``remaining_bytes``, then one final message whose blob is
the SHA-256 of everything before it, so etcdctl and etcd can check, restore and serve it. The
state is captured in the event loop at once (:func:`~coord.server.backup.etcddb.capture`:
references to the history, which later writes do not change); a worker thread writes the db
from it to a temporary file in the data directory, which is then streamed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import SupportsBytes

import anyio.to_thread
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError

from coord._pb import etcdserverpb as pb
from coord.errors import CoordError
from coord.server.backup.etcddb import CLUSTER_VERSION, capture, write_backend
from coord.server.command import Kind
from coord.server.membership import MemberInfo

from .common import (
    ApiContext,
    RawStream,
    handler,
    parse,
    recv_frame,
    send_response,
    to_grpc_error,
    unary_handlers,
)

__all__ = [
    "ClusterService",
    "MaintenanceService",
    "VERSION",
    "disk_usage",
]

#: Server version reported by Status (an etcd-like version string clients parse); a
#: snapshot's ``cluster`` bucket records the same.
VERSION = CLUSTER_VERSION
SNAPSHOT_CHUNK = 32 * 1024


def _member(m: MemberInfo) -> pb.Member:
    return pb.Member(
        id=m.id,
        name=m.name,
        peer_ur_ls=list(m.peer_urls),
        client_ur_ls=list(m.client_urls),
        is_learner=m.is_learner,
    )


def disk_usage(path: str) -> int:
    """Bytes of the files under ``path`` (WAL and snapshots): etcd's dbSize is its file size."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # a WAL segment or snapshot replaced while we walk
    return total


class MaintenanceService:
    """The Maintenance service."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def status(self, stream: RawStream, data: bytes) -> bytes:
        """Status: version, sizes, leader, raft indexes, alarms as error strings."""
        parse(pb.StatusRequest, data)
        ctx = self.ctx
        node = ctx.node
        errors = [f"memberID:{m} alarm:{pb.AlarmType(a).name}" for m, a in ctx.sm.alarm_list()]
        leader = node.leader_id()
        if not leader:
            errors.append("etcdserver: no leader")
        in_use = ctx.sm.kv.db_size()
        size = max(disk_usage(ctx.config.data_dir), in_use)
        learner = any(m.is_learner for m in node.members() if m.id == node.member_id)
        resp = pb.StatusResponse(
            version=VERSION,
            db_size=size,
            leader=leader,
            raft_index=node.commit_index(),
            raft_term=node.term(),
            raft_applied_index=node.applied_index(),
            errors=errors,
            db_size_in_use=in_use,
            is_learner=learner,
            storage_version=VERSION,
            db_size_quota=ctx.config.quota_bytes,
        )
        return ctx.current(bytes(resp))

    async def hash(self, stream: RawStream, data: bytes) -> bytes:
        """Hash of the whole store (self-consistent only)."""
        parse(pb.HashRequest, data)
        return self.ctx.current(bytes(pb.HashResponse(hash=self.ctx.sm.kv.hash())))

    async def hash_kv(self, stream: RawStream, data: bytes) -> bytes:
        """HashKV at a revision (0 = current)."""
        req = parse(pb.HashKvRequest, data)
        h, compact_rev, hash_rev = self.ctx.sm.kv.hash_kv(req.revision)
        resp = pb.HashKvResponse(hash=h, compact_revision=compact_rev, hash_revision=hash_rev)
        return self.ctx.current(bytes(resp))

    async def alarm(self, stream: RawStream, data: bytes) -> bytes:
        """Alarm GET (local) or ACTIVATE/DEACTIVATE (through the log)."""
        req = parse(pb.AlarmRequest, data)
        ctx = self.ctx
        if req.action == pb.AlarmRequestAlarmAction.GET:
            alarms = [
                pb.AlarmMember(member_id=m, alarm=pb.AlarmType(a))
                for m, a in ctx.sm.alarm_list(int(req.alarm))
            ]
            return ctx.current(bytes(pb.AlarmResponse(alarms=alarms)))
        rev, body = await ctx.propose(Kind.ALARM, data)
        return ctx.response(rev, body)

    async def defragment(self, stream: RawStream, data: bytes) -> bytes:
        """Nothing to defragment in memory; answered like etcd (no header)."""
        parse(pb.DefragmentRequest, data)
        return b""

    async def move_leader(self, stream: RawStream, data: bytes) -> bytes:
        """Delegated to the node."""
        req = parse(pb.MoveLeaderRequest, data)
        await self.ctx.node.transfer_leader(req.target_id)
        return b""

    async def snapshot(self, stream: RawStream) -> None:
        """Stream the state snapshot in 32 KiB chunks, then its SHA-256."""
        ctx = self.ctx
        data = await recv_frame(stream, ctx.recv_limit)
        try:
            ctx.check_leader(stream)
            ctx.guard.authorize(stream, "/etcdserverpb.Maintenance/Snapshot", data or b"")
            parse(pb.SnapshotRequest, data or b"")
        except CoordError as e:
            raise to_grpc_error(e) from None
        # the state as of now, captured in the loop; a worker thread writes the db from it
        cap = capture(ctx.sm, ctx.node.members(), (), CLUSTER_VERSION)
        head = ctx.header_bytes(ctx.sm.kv.rev)
        with tempfile.TemporaryFile(dir=ctx.config.data_dir) as f:
            total = await anyio.to_thread.run_sync(write_backend, f, cap)
            f.seek(0)
            digest = hashlib.sha256()
            sent = 0
            while sent < total:
                chunk = f.read(min(SNAPSHOT_CHUNK, total - sent))
                sent += len(chunk)
                digest.update(chunk)
                resp = pb.SnapshotResponse(
                    remaining_bytes=total - sent, blob=chunk, version=VERSION
                )
                await send_response(stream, head + bytes(resp))
        await send_response(
            stream,
            head
            + bytes(pb.SnapshotResponse(remaining_bytes=0, blob=digest.digest(), version=VERSION)),
        )

    async def downgrade(self, stream: RawStream, data: bytes) -> bytes:
        """Not supported: there is a single server version."""
        parse(pb.DowngradeRequest, data)
        raise GRPCError(Status.UNIMPLEMENTED, "coord: downgrade is not supported")

    def __mapping__(self) -> dict[str, Handler]:
        """grpclib handler table."""
        p = "/etcdserverpb.Maintenance/"
        table = unary_handlers(
            self.ctx,
            {
                p + "Status": self.status,
                p + "Hash": self.hash,
                p + "HashKV": self.hash_kv,
                p + "Alarm": self.alarm,
                p + "Defragment": self.defragment,
                p + "MoveLeader": self.move_leader,
                p + "Downgrade": self.downgrade,
            },
        )
        table[p + "Snapshot"] = handler(self.snapshot, Cardinality.UNARY_STREAM)
        return table


class ClusterService:
    """The Cluster service (membership changes are the node's business)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def _response(self, body: SupportsBytes) -> bytes:
        # etcd's Cluster service header has cluster ID, member ID and term, but no revision
        return self.ctx.response(0, bytes(body))

    def _members(self) -> list[pb.Member]:
        return [_member(m) for m in self.ctx.node.members()]

    async def member_list(self, stream: RawStream, data: bytes) -> bytes:
        """MemberList (linearizable when asked)."""
        req = parse(pb.MemberListRequest, data)
        if req.linearizable:
            await self.ctx.node.read_index()
        return self._response(pb.MemberListResponse(members=self._members()))

    async def member_add(self, stream: RawStream, data: bytes) -> bytes:
        """MemberAdd."""
        req = parse(pb.MemberAddRequest, data)
        m = await self.ctx.node.add_member(list(req.peer_ur_ls), req.is_learner)
        return self._response(pb.MemberAddResponse(member=_member(m), members=self._members()))

    async def member_remove(self, stream: RawStream, data: bytes) -> bytes:
        """MemberRemove."""
        req = parse(pb.MemberRemoveRequest, data)
        await self.ctx.node.remove_member(req.id)
        return self._response(pb.MemberRemoveResponse(members=self._members()))

    async def member_update(self, stream: RawStream, data: bytes) -> bytes:
        """MemberUpdate."""
        req = parse(pb.MemberUpdateRequest, data)
        await self.ctx.node.update_member(req.id, list(req.peer_ur_ls))
        return self._response(pb.MemberUpdateResponse(members=self._members()))

    async def member_promote(self, stream: RawStream, data: bytes) -> bytes:
        """MemberPromote."""
        req = parse(pb.MemberPromoteRequest, data)
        await self.ctx.node.promote_member(req.id)
        return self._response(pb.MemberPromoteResponse(members=self._members()))

    def __mapping__(self) -> dict[str, Handler]:
        """grpclib handler table."""
        p = "/etcdserverpb.Cluster/"
        return unary_handlers(
            self.ctx,
            {
                p + "MemberList": self.member_list,
                p + "MemberAdd": self.member_add,
                p + "MemberRemove": self.member_remove,
                p + "MemberUpdate": self.member_update,
                p + "MemberPromote": self.member_promote,
            },
        )
