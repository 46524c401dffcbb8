"""etcdserverpb.Maintenance (Status, Hash, HashKV, Snapshot, Alarm, Defragment, MoveLeader)
and etcdserverpb.Cluster (member list and changes, delegated to the node).

Theory of operation: reads of member-local state (status, hashes, alarms) are answered from
the node and state machine; alarm activation/deactivation are commands. Snapshot streams the
state-machine snapshot in etcd's framing: 32 KiB chunks with ``remaining_bytes``, then one
final message whose blob is the SHA-256 of everything before it. The data part is our own
format (``COORDSNP`` magic, 8-byte length, msgpack state) padded to a multiple of 512 bytes,
because etcdctl checks ``size % 512 == 32`` (bbolt files are page multiples).
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import SupportsBytes

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError

from coord._pb import etcdserverpb as pb
from coord.errors import CoordError
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
    "SNAPSHOT_MAGIC",
    "ClusterService",
    "MaintenanceService",
    "VERSION",
    "disk_usage",
    "read_snapshot_file",
]

#: Server version reported by Status (an etcd-like version string clients parse).
VERSION = "3.5.0"
SNAPSHOT_MAGIC = b"COORDSNP"
SNAPSHOT_CHUNK = 32 * 1024


def snapshot_blob(state: bytes) -> bytes:
    """Our snapshot file body: magic, length, state, zero padding to a multiple of 512."""
    blob = SNAPSHOT_MAGIC + struct.pack(">Q", len(state)) + state
    return blob + b"\x00" * (-len(blob) % 512)


def read_snapshot_file(data: bytes) -> bytes:
    """The state-machine snapshot inside a ``snapshot save`` file (checks the SHA-256)."""
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise ValueError("snapshot checksum mismatch")
    if not body.startswith(SNAPSHOT_MAGIC):
        raise ValueError("not a coord snapshot")
    (length,) = struct.unpack_from(">Q", body, len(SNAPSHOT_MAGIC))
    start = len(SNAPSHOT_MAGIC) + 8
    return body[start : start + length]


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
        blob = snapshot_blob(ctx.sm.snapshot())
        head = ctx.header_bytes(ctx.sm.kv.rev)
        total = len(blob)
        digest = hashlib.sha256()
        for start in range(0, total, SNAPSHOT_CHUNK):
            chunk = blob[start : start + SNAPSHOT_CHUNK]
            digest.update(chunk)
            resp = pb.SnapshotResponse(
                remaining_bytes=total - start - len(chunk), blob=chunk, version=VERSION
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
