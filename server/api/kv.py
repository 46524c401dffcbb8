"""etcdserverpb.KV: Range, Put, DeleteRange, Txn, Compact.

Theory of operation: requests are validated here (empty keys, ignore_* rules, max-txn-ops as
etcd counts them) so that doomed writes never enter the log. Writes are proposed as commands
and answered with the header for the revision the apply produced; reads (Range and read-only
Txn) wait for the node's read index unless serializable, then read the local store directly.
"""

from __future__ import annotations

from grpclib.const import Handler

from coord._pb import etcdserverpb as pb
from coord._protowire import PutRequestField
from coord.errors import (
    EmptyKeyError,
    KeyNotFoundError,
    LeaseProvidedError,
    TooManyOpsError,
    ValueProvidedError,
)
from coord.server.command import Kind
from coord.server.statemachine import txn_has_put

from .common import ApiContext, RawStream, parse, scan, unary_handlers

__all__ = ["KVService", "check_txn", "txn_is_read_only"]

#: Bytes etcd adds to a put's size when estimating quota use (key index overhead).
_PUT_OVERHEAD = 256


def _check_put(req: pb.PutRequest) -> None:
    if not req.key:
        raise EmptyKeyError()
    if req.ignore_value and req.value:
        raise ValueProvidedError()
    if req.ignore_lease and req.lease:
        raise LeaseProvidedError()


def check_txn(req: pb.TxnRequest, max_ops: int) -> None:
    """etcd's checkTxnRequest: op counts (nested txns get what the outer level leaves),
    non-empty compare keys, every op valid like its standalone RPC, no empty ops."""
    opc = max(len(req.compare), len(req.success), len(req.failure))
    if opc > max_ops:
        raise TooManyOpsError()
    for c in req.compare:
        if not c.key:
            raise EmptyKeyError()
    for op in (*req.success, *req.failure):
        if op.request_range is not None:
            if not op.request_range.key:
                raise EmptyKeyError()
        elif op.request_put is not None:
            _check_put(op.request_put)
        elif op.request_delete_range is not None:
            if not op.request_delete_range.key:
                raise EmptyKeyError()
        elif op.request_txn is not None:
            check_txn(op.request_txn, max_ops - opc)
        else:
            raise KeyNotFoundError()


def txn_is_read_only(req: pb.TxnRequest) -> bool:
    """True if every op of both branches (nested txns included) is a range."""
    for op in (*req.success, *req.failure):
        if op.request_range is not None:
            continue
        if op.request_txn is not None and txn_is_read_only(op.request_txn):
            continue
        return False
    return True


def _txn_serializable(req: pb.TxnRequest) -> bool:
    for op in (*req.success, *req.failure):
        if op.request_range is not None and not op.request_range.serializable:
            return False
        if op.request_txn is not None and not _txn_serializable(op.request_txn):
            return False
    return True


class KVService:
    """The KV service over an :class:`ApiContext`."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def range(self, stream: RawStream, data: bytes) -> bytes:
        """Range: linearizable unless serializable; header revision = current revision."""
        req = parse(pb.RangeRequest, data)
        if not req.key:
            raise EmptyKeyError()
        ctx = self.ctx
        if not req.serializable:
            await ctx.node.read_index()
        kv = ctx.sm.kv
        body = kv.range(req)
        return ctx.response(kv.rev, body)

    async def put(self, stream: RawStream, data: bytes) -> bytes:
        """Put through the log."""
        f = scan(pb.PutRequest, data)  # no full parse here: the apply parses it once
        if not f.get(PutRequestField.KEY):  # the key's length
            raise EmptyKeyError()
        if f.get(PutRequestField.IGNORE_VALUE) and f.get(PutRequestField.VALUE):
            raise ValueProvidedError()
        if f.get(PutRequestField.IGNORE_LEASE) and f.get(PutRequestField.LEASE):
            raise LeaseProvidedError()
        ctx = self.ctx
        await ctx.check_quota(len(data) + _PUT_OVERHEAD)
        rev, body = await ctx.propose(Kind.PUT, data)
        return ctx.response(rev, body)

    async def delete_range(self, stream: RawStream, data: bytes) -> bytes:
        """DeleteRange through the log."""
        req = parse(pb.DeleteRangeRequest, data)
        if not req.key:
            raise EmptyKeyError()
        rev, body = await self.ctx.propose(Kind.DELETE_RANGE, data)
        return self.ctx.response(rev, body)

    async def txn(self, stream: RawStream, data: bytes) -> bytes:
        """Txn: read-only ones are served locally, others go through the log."""
        req = parse(pb.TxnRequest, data)
        ctx = self.ctx
        check_txn(req, ctx.config.max_txn_ops)
        if txn_is_read_only(req):
            if not _txn_serializable(req):
                await ctx.node.read_index()
            kv = ctx.sm.kv
            body = kv.txn(req)
            return ctx.response(kv.rev, body)
        if txn_has_put(req):
            await ctx.check_quota(len(data) + _PUT_OVERHEAD)
        with ctx.sm.read_ahead(data, req):
            rev, body = await ctx.propose(Kind.TXN, data)
        return ctx.response(rev, body)

    async def compact(self, stream: RawStream, data: bytes) -> bytes:
        """Compact through the log (logical compaction is immediate; physical is too)."""
        parse(pb.CompactionRequest, data)
        rev, _ = await self.ctx.propose(Kind.COMPACT, data)
        return self.ctx.response(rev)

    def __mapping__(self) -> dict[str, Handler]:
        """grpclib handler table."""
        p = "/etcdserverpb.KV/"
        return unary_handlers(
            self.ctx,
            {
                p + "Range": self.range,
                p + "Put": self.put,
                p + "DeleteRange": self.delete_range,
                p + "Txn": self.txn,
                p + "Compact": self.compact,
            },
        )
