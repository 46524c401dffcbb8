"""Shared machinery of the gRPC services: request intake, limits, errors, headers, proposals.

Theory of operation: every handler is a raw grpclib handler (``stream`` in, nothing out) built
by :func:`unary` or written by hand for streams. Requests are read frame by frame with
:func:`recv_frame`, which checks the 5-byte gRPC length prefix against the receive limit
*before* buffering the payload (grpclib itself has no limit), then validated strictly
(:func:`parse`) and read into betterproto2 messages (:mod:`coord.server.pbdecode`). Handlers
raise :class:`coord.errors.CoordError` subclasses; :func:`unary` turns them into gRPC statuses
with etcd's code and exact message. Responses are bytes: header field + body, encoded by
:class:`ApiContext`.

A client that goes away (Ctrl-C, kill -9, a reset stream) is normal. grpclib then cancels the
handler's task and expects it to end with ``CancelledError``; anything else is logged as
"Failed to handle cancellation" with a traceback. Stream handlers that run anyio task groups
(Watch, LeaseKeepAlive) have child tasks grpclib does not cancel itself: one writing to the
reset stream fails (h2 ``StreamClosedError``) before the group is cancelled, and the group
would end with that error instead of the cancellation. :func:`raise_first` therefore lets the
cancellation win whenever the handler's task is being cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from coord._pb import etcdserverpb as pb
from coord._protowire import (
    VARINT,
    ResponseHeaderField,
    bytes_field,
    encode_varint,
    int_field,
    tag,
)
from coord.errors import (
    CoordError,
    InvalidArgumentError,
    NoLeaderError,
    NoSpaceError,
    RequestTooLargeError,
)
from coord.server.auth import Guard, parse_auth_token
from coord.server.command import Kind, encode, split_result
from coord.server.config import Config
from coord.server.grpclib_compat import h2_stream
from coord.server.pbdecode import read_message
from coord.server.statemachine import StateMachine

from .callstats import count_received, count_sent
from .pbcheck import check_message

if TYPE_CHECKING:
    from coord.server.node.protocol import Node

__all__ = [
    "ApiContext",
    "encode_header",
    "handler",
    "header_field",
    "parse",
    "raise_first",
    "recv_frame",
    "scan",
    "send_response",
    "send_responses",
    "to_grpc_error",
    "unary",
    "unary_handlers",
]

log = logging.getLogger("coord.server.api")

M = TypeVar("M")
RawStream = Stream[Any, Any]

_HEADER_REVISION = bytes((tag(ResponseHeaderField.REVISION, VARINT),))
#: the field number of ``header`` in every etcd response (RangeResponse, PutResponse, ...)
_RESPONSE_HEADER = 1


def encode_header(cluster_id: int, member_id: int, revision: int, raft_term: int) -> bytes:
    """Encoded etcdserverpb.ResponseHeader (zero fields omitted, as proto3 does)."""
    return (
        int_field(ResponseHeaderField.CLUSTER_ID, cluster_id)
        + int_field(ResponseHeaderField.MEMBER_ID, member_id)
        + int_field(ResponseHeaderField.REVISION, revision)
        + int_field(ResponseHeaderField.RAFT_TERM, raft_term)
    )


def header_field(header: bytes) -> bytes:
    """Field 1 (``header``) of any etcd response, carrying the encoded ``header``."""
    return bytes_field(_RESPONSE_HEADER, header)


def raise_first(group: BaseExceptionGroup[Exception]) -> NoReturn:
    """End a stream handler whose task group failed: with ``CancelledError`` while grpclib is
    cancelling the handler (the client went away; the group's errors are consequences of that,
    such as writing to the reset stream), else with the group's first error itself."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        log.debug(
            "stream %s ended: the client went away (%r)", task.get_name(), group.exceptions[0]
        )
        raise asyncio.CancelledError
    raise group.exceptions[0] from None


def to_grpc_error(err: CoordError) -> GRPCError:
    """The grpclib status for a CoordError (same numeric code, exact message)."""
    return GRPCError(Status(int(err.code)), err.message)


async def recv_frame(stream: RawStream, limit: int) -> bytes | None:
    """Next request message as raw bytes, None at end of stream.

    A message longer than ``limit`` is refused (RESOURCE_EXHAUSTED, grpc-go's text) from its
    length prefix alone, before its payload is read.
    """
    frames = h2_stream(stream)  # grpclib's protocol stream: read frames ourselves
    meta = await frames.recv_data(5)
    if not meta:
        return None
    if len(meta) != 5:
        raise GRPCError(Status.INTERNAL, "coord: truncated gRPC message prefix")
    flag, length = struct.unpack(">?I", meta)
    if flag:
        raise GRPCError(Status.UNIMPLEMENTED, "coord: compressed messages are not supported")
    if length > limit:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"grpc: received message larger than max ({length} vs. {limit})",
        )
    data: bytes = await frames.recv_data(length) if length else b""
    if len(data) != length:
        raise GRPCError(Status.INTERNAL, "coord: truncated gRPC message")
    count_received(length)
    return data


async def send_response(stream: RawStream, message: bytes) -> None:
    """Send one response message (counted for the call's metrics)."""
    count_sent(len(message))
    await stream.send_message(message)


async def send_responses(stream: RawStream, messages: list[bytes]) -> None:
    """Send response messages together, in order (each counted for the call's metrics)."""
    count_sent(sum(map(len, messages)), len(messages))
    await stream.send_messages(messages)  # type: ignore[attr-defined]


def scan(cls: type, data: bytes) -> dict[int, int]:
    """Validate ``data`` strictly as ``cls`` without parsing it; returns the top-level fields
    (varint value or length per field number). InvalidArgumentError if malformed."""
    fields: dict[int, int] = {}
    try:
        check_message(data, cls, fields=fields)
    except ValueError as e:
        raise InvalidArgumentError(f"coord: malformed {cls.__name__}: {e}") from e
    return fields


def parse(cls: type[M], data: bytes) -> M:
    """Validate ``data`` strictly and parse it as ``cls``; InvalidArgumentError if malformed.
    A message :func:`~coord.server.pbdecode.read_message` reads is well-formed already; the
    others are checked, then parsed by betterproto2."""
    message = read_message(cls, data)
    if message is not None:
        return message
    try:
        check_message(data, cls)
        return cls.parse(data)  # type: ignore[attr-defined, no-any-return]
    except (ValueError, KeyError, EOFError, TypeError, IndexError) as e:
        name = getattr(cls, "__name__", "message")
        raise InvalidArgumentError(f"coord: malformed {name}: {e}") from e


class ApiContext:
    """What every service needs: config, node, state machine, header encoding, proposals."""

    def __init__(self, config: Config, node: Node, sm: StateMachine) -> None:
        self.config = config
        self.node = node
        self.sm = sm
        self.recv_limit = config.max_recv_bytes
        self.tokens = parse_auth_token(config.auth_token, config.auth_token_ttl)
        sm.auth.add_login_listener(self.tokens.learn)
        self.guard = Guard(  # a lambda: a snapshot restore replaces sm.kv
            sm.auth,
            self.tokens,
            config.client_tls.client_cert_auth,
            lease_keys=lambda lease_id: self.sm.kv.keys_for_lease(lease_id),
        )
        self._header_parts: tuple[tuple[int, int, int], bytes, bytes] = ((-1, -1, -1), b"", b"")

    def header(self, revision: int) -> bytes:
        """Encoded ResponseHeader for ``revision`` (cluster, member, current term)."""
        node = self.node
        key = (node.cluster_id, node.member_id, node.term())
        cached = self._header_parts
        if cached[0] != key:
            ids = encode_header(key[0], key[1], 0, 0)
            term = encode_header(0, 0, 0, key[2])
            cached = self._header_parts = (key, ids, term)
        if revision:
            return cached[1] + _HEADER_REVISION + encode_varint(revision) + cached[2]
        return cached[1] + cached[2]

    def header_bytes(self, revision: int) -> bytes:
        """Response field 1 carrying the header for ``revision``."""
        return header_field(self.header(revision))

    def response(self, revision: int, body: bytes = b"") -> bytes:
        """A full encoded response: header field for ``revision`` then ``body``."""
        return header_field(self.header(revision)) + body

    def current(self, body: bytes = b"") -> bytes:
        """A full response whose header carries the current store revision."""
        return self.response(self.sm.kv.rev, body)

    @staticmethod
    def requires_leader(stream: RawStream) -> bool:
        """The client sent ``hasleader: true`` (clientv3's WithRequireLeader)."""
        md = stream.metadata
        return md is not None and md.get("hasleader") == "true"

    async def until_leader_lost(self, interval: float = 1.0) -> None:
        """Return once this member knows no leader (polled every ``interval`` seconds)."""
        while self.node.leader_id():
            await anyio.sleep(interval)

    def check_leader(self, stream: RawStream) -> None:
        """NoLeaderError when the client asked ``hasleader`` and no leader is known."""
        md = stream.metadata
        if md is not None and md.get("hasleader") == "true" and not self.node.leader_id():
            raise NoLeaderError()

    async def propose(self, kind: Kind, payload: bytes) -> tuple[int, bytes]:
        """Propose a command; returns (revision after apply, response body)."""
        command = encode(kind, payload)
        if len(command) > self.config.max_request_bytes:
            raise RequestTooLargeError()
        return split_result(await self.node.propose(command))

    async def check_quota(self, cost: int) -> None:
        """NoSpaceError if NOSPACE is active, or if ``cost`` more bytes would exceed the quota
        (then the NOSPACE alarm is raised first, as etcd does)."""
        if self.sm.nospace():
            raise NoSpaceError()
        if self.sm.kv.db_size() + cost > self.config.quota_bytes:
            req = pb.AlarmRequest(
                action=pb.AlarmRequestAlarmAction.ACTIVATE,
                member_id=self.node.member_id,
                alarm=pb.AlarmType.NOSPACE,
            )
            log.warning(
                "database space exceeded (quota %d bytes): raising NOSPACE alarm",
                self.config.quota_bytes,
            )
            try:
                await self.propose(Kind.ALARM, bytes(req))
            except CoordError as e:
                log.warning("could not raise NOSPACE alarm: %s", e.message)
            raise NoSpaceError()


Impl = Callable[[RawStream, bytes], Awaitable[bytes]]


def unary(ctx: ApiContext, impl: Impl, path: str) -> Callable[[RawStream], Awaitable[None]]:
    """Wrap ``impl(stream, request_bytes) -> response_bytes`` as the raw unary handler of
    method ``path``: the request is read, the caller authorized, then ``impl`` runs."""
    guard = ctx.guard

    async def run(stream: RawStream) -> None:
        data = await recv_frame(stream, ctx.recv_limit)
        if data is None:
            raise GRPCError(Status.INTERNAL, "coord: request message missing")
        try:
            ctx.check_leader(stream)
            guard.authorize(stream, path, data)
            response = await impl(stream, data)
        except CoordError as e:
            raise to_grpc_error(e) from None
        await send_response(stream, response)

    return run


def handler(func: Callable[[RawStream], Awaitable[None]], cardinality: Cardinality) -> Handler:
    """A grpclib Handler whose request/response types are raw bytes."""
    return Handler(func, cardinality, bytes, bytes)


def unary_handlers(ctx: ApiContext, table: dict[str, Impl]) -> dict[str, Handler]:
    """grpclib handlers for unary methods: gRPC path -> ``impl`` (see :func:`unary`)."""
    u = Cardinality.UNARY_UNARY
    return {path: handler(unary(ctx, impl, path), u) for path, impl in table.items()}
