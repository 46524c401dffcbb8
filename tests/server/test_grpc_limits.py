"""Rejected inputs over real gRPC: sizes, malformed protobuf, garbage on the wire.

Raw calls go through grpclib with the server's pass-through codec, so the tests control the
exact bytes on the wire. Where etcd's behaviour is the contract (size limits, lease errors),
the same test runs against a real etcd.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from support import close_channel

from coord._pb import etcdserverpb as pb
from coord.server.api.rawcodec import RawCodec

T = TypeVar("T")


def run(coro_fn: Callable[[Channel], Awaitable[T]], endpoint: str) -> T:
    host, port = endpoint.rsplit(":", 1)

    async def main() -> T:
        channel = Channel(host, int(port), codec=RawCodec())
        try:
            return await asyncio.wait_for(coro_fn(channel), timeout=20)
        finally:
            await close_channel(channel)

    return asyncio.run(main())


async def unary(channel: Channel, path: str, payload: bytes) -> bytes:
    async with channel.request(path, Cardinality.UNARY_UNARY, bytes, bytes) as stream:
        await stream.send_message(payload, end=True)
        reply: Any = await stream.recv_message()
        return bytes(reply)


def status_of(endpoint: str, path: str, payload: bytes) -> tuple[Status, str | None]:
    async def call(channel: Channel) -> tuple[Status, str | None]:
        try:
            await unary(channel, path, payload)
        except GRPCError as e:
            return e.status, e.message
        return Status.OK, None

    return run(call, endpoint)


def put_bytes(key: bytes, value: bytes, lease: int = 0) -> bytes:
    return bytes(pb.PutRequest(key=key, value=value, lease=lease))


def test_request_too_large(backend: str, prefix: str) -> None:
    payload = put_bytes(prefix.encode() + b"big", b"x" * (1572864 + 100))
    assert status_of(backend, "/etcdserverpb.KV/Put", payload) == (
        Status.INVALID_ARGUMENT,
        "etcdserver: request is too large",
    )
    just_fits = put_bytes(prefix.encode() + b"ok", b"x" * (1572864 - 1000))
    assert status_of(backend, "/etcdserverpb.KV/Put", just_fits) == (Status.OK, None)


def test_message_over_receive_limit(backend: str, prefix: str) -> None:
    payload = put_bytes(prefix.encode() + b"huge", b"x" * (2 * 1024 * 1024 + 10))
    code, message = status_of(backend, "/etcdserverpb.KV/Put", payload)
    assert code == Status.RESOURCE_EXHAUSTED
    assert message == f"grpc: received message larger than max ({len(payload)} vs. 2097152)"
    # the connection is still usable afterwards
    assert status_of(backend, "/etcdserverpb.Maintenance/Status", b"")[0] == Status.OK


def test_unknown_lease_on_put(backend: str, prefix: str) -> None:
    assert status_of(backend, "/etcdserverpb.KV/Put", put_bytes(prefix.encode(), b"v", 12345)) == (
        Status.NOT_FOUND,
        "etcdserver: requested lease not found",
    )
    revoke = bytes(pb.LeaseRevokeRequest(id=12345))
    assert status_of(backend, "/etcdserverpb.Lease/LeaseRevoke", revoke) == (
        Status.NOT_FOUND,
        "etcdserver: requested lease not found",
    )


def test_lease_errors(backend: str) -> None:
    too_big = bytes(pb.LeaseGrantRequest(ttl=9_000_000_001))
    assert status_of(backend, "/etcdserverpb.Lease/LeaseGrant", too_big) == (
        Status.OUT_OF_RANGE,
        "etcdserver: too large lease TTL",
    )

    async def grant_twice(channel: Channel) -> tuple[pb.LeaseGrantResponse, Status, str | None]:
        req = bytes(pb.LeaseGrantRequest(ttl=1, id=0x5EED0000 + id(channel) % 100000))
        first = pb.LeaseGrantResponse.parse(
            await unary(channel, "/etcdserverpb.Lease/LeaseGrant", req)
        )
        try:
            await unary(channel, "/etcdserverpb.Lease/LeaseGrant", req)
        except GRPCError as e:
            return first, e.status, e.message
        return first, Status.OK, None

    first, code, message = run(grant_twice, backend)
    assert first.ttl == 2  # raised to the minimum TTL (1.5 x election timeout)
    assert (code, message) == (Status.FAILED_PRECONDITION, "etcdserver: lease already exists")

    async def ttl_unknown(channel: Channel) -> pb.LeaseTimeToLiveResponse:
        data = await unary(
            channel,
            "/etcdserverpb.Lease/LeaseTimeToLive",
            bytes(pb.LeaseTimeToLiveRequest(id=424242)),
        )
        return pb.LeaseTimeToLiveResponse.parse(data)

    resp = run(ttl_unknown, backend)
    assert (resp.id, resp.ttl) == (424242, -1)


def test_empty_and_invalid_requests(backend: str) -> None:
    assert status_of(backend, "/etcdserverpb.KV/Range", b"") == (
        Status.INVALID_ARGUMENT,
        "etcdserver: key is not provided",
    )
    assert status_of(backend, "/etcdserverpb.KV/DeleteRange", b"") == (
        Status.INVALID_ARGUMENT,
        "etcdserver: key is not provided",
    )
    ignore = bytes(pb.PutRequest(key=b"k", value=b"v", ignore_value=True))
    assert status_of(backend, "/etcdserverpb.KV/Put", ignore) == (
        Status.INVALID_ARGUMENT,
        "etcdserver: value is provided",
    )
    ignore = bytes(pb.PutRequest(key=b"k", lease=5, ignore_lease=True))
    assert status_of(backend, "/etcdserverpb.KV/Put", ignore) == (
        Status.INVALID_ARGUMENT,
        "etcdserver: lease is provided",
    )
    empty_op = bytes(pb.TxnRequest(success=[pb.RequestOp()]))
    assert status_of(backend, "/etcdserverpb.KV/Txn", empty_op) == (
        Status.INVALID_ARGUMENT,
        "etcdserver: key not found",
    )


def test_malformed_protobuf_is_invalid_argument(coord_server: Any) -> None:
    ep = coord_server.endpoint
    for path in (
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Put",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.Lease/LeaseGrant",
        "/etcdserverpb.Maintenance/Status",
    ):
        code, message = status_of(ep, path, b"\x0a\x05ab")
        assert code == Status.INVALID_ARGUMENT, path
        assert message is not None
        assert message.startswith("coord: malformed "), message
        assert "exceeds message" in message
    code, message = status_of(ep, "/etcdserverpb.KV/Range", b"garbage bytes!!")
    assert code == Status.INVALID_ARGUMENT
    assert status_of(ep, "/etcdserverpb.Maintenance/Status", b"")[0] == Status.OK


def test_malformed_watch_and_keepalive_end_stream(coord_server: Any) -> None:
    async def bad_stream(channel: Channel, path: str) -> tuple[Status, str | None]:
        try:
            async with channel.request(path, Cardinality.STREAM_STREAM, bytes, bytes) as stream:
                await stream.send_message(b"\x0a\x09\x0a\x01")
                while await stream.recv_message() is not None:
                    pass
        except GRPCError as e:
            return e.status, e.message
        return Status.OK, None

    for path in ("/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive"):
        code, message = run(functools.partial(bad_stream, path=path), coord_server.endpoint)
        assert code == Status.INVALID_ARGUMENT, path
        assert message is not None
        assert message.startswith("coord: malformed")


def test_truncated_grpc_frame(coord_server: Any) -> None:
    async def call(channel: Channel) -> Status:
        async with channel.request(
            "/etcdserverpb.KV/Range", Cardinality.UNARY_UNARY, bytes, bytes
        ) as stream:
            await stream.send_request()
            # a gRPC prefix announcing 100 bytes, then only 3, then end of stream
            await stream._stream.send_data(struct.pack(">?I", False, 100) + b"abc", end_stream=True)
            stream._end_done = True
            try:
                await stream.recv_message()
            except GRPCError as e:
                return e.status
            except StreamTerminatedError:
                return Status.UNKNOWN
        return Status.OK

    assert run(call, coord_server.endpoint) in (Status.INTERNAL, Status.UNKNOWN)
    assert status_of(coord_server.endpoint, "/etcdserverpb.Maintenance/Status", b"")[0] == Status.OK


def test_garbage_bytes_on_the_connection(coord_server: Any) -> None:
    host, port = coord_server.endpoint.rsplit(":", 1)
    for garbage in (
        b"\x00" * 64,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 200,
        b"GET / HTTP/1.1\r\n\r\n",
        bytes(range(256)) * 8,
    ):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(garbage)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, TimeoutError):
                pass
    assert status_of(coord_server.endpoint, "/etcdserverpb.Maintenance/Status", b"")[0] == Status.OK


def test_hasleader_metadata_is_accepted(coord_server: Any) -> None:
    async def call(channel: Channel) -> int:
        async with channel.request(
            "/etcdserverpb.Maintenance/Status",
            Cardinality.UNARY_UNARY,
            bytes,
            bytes,
            metadata={"hasleader": "true"},
        ) as stream:
            await stream.send_message(b"", end=True)
            reply: Any = await stream.recv_message()
        return pb.StatusResponse.parse(reply).leader

    assert run(call, coord_server.endpoint) != 0


def test_auth_status_disabled(coord_server: Any) -> None:
    # (etcd 3.4 has no AuthStatus RPC; 3.5+ answers enabled=false like this)
    async def call(channel: Channel) -> pb.AuthStatusResponse:
        return pb.AuthStatusResponse.parse(
            await unary(channel, "/etcdserverpb.Auth/AuthStatus", b"")
        )

    assert run(call, coord_server.endpoint).enabled is False


def test_authenticate_when_auth_disabled(backend: str) -> None:
    req = bytes(pb.AuthenticateRequest(name="root", password="x"))
    assert status_of(backend, "/etcdserverpb.Auth/Authenticate", req) == (
        Status.FAILED_PRECONDITION,
        "etcdserver: authentication is not enabled",
    )


def _range(endpoint: str, req: pb.RangeRequest) -> pb.RangeResponse:
    async def call(channel: Channel) -> pb.RangeResponse:
        return pb.RangeResponse.parse(await unary(channel, "/etcdserverpb.KV/Range", bytes(req)))

    return run(call, endpoint)


def test_bad_ranges(backend: str, prefix: str) -> None:
    p = prefix.encode()
    for k in (b"a", b"b", b"c"):
        assert status_of(backend, "/etcdserverpb.KV/Put", put_bytes(p + k, b"v"))[0] == Status.OK
    # range_end before key: matches nothing, no error (etcd)
    empty = _range(backend, pb.RangeRequest(key=p + b"c", range_end=p + b"a"))
    assert (empty.kvs, empty.count, empty.more) == ([], 0, False)
    counted = _range(
        backend, pb.RangeRequest(key=p, range_end=p[:-1] + b"0", count_only=True, limit=1)
    )
    assert (counted.kvs, counted.count) == ([], 3)
    keys = _range(
        backend,
        pb.RangeRequest(
            key=p, range_end=p[:-1] + b"0", keys_only=True, min_create_revision=1, limit=2
        ),
    )
    assert [(kv.key, kv.value) for kv in keys.kvs] == [(p + b"a", b""), (p + b"b", b"")]
    assert keys.more is True
    assert keys.count == 3


def test_invalid_sort_option(coord_server: Any, prefix: str) -> None:
    # etcd >= 3.5 checks the enums (etcd 3.4.23, the one installed here, does not)
    p = prefix.encode()
    end = p[:-1] + b"0"
    for req in (
        pb.RangeRequest(key=p, range_end=end, sort_order=pb.RangeRequestSortOrder(9)),
        pb.RangeRequest(key=p, range_end=end, sort_target=pb.RangeRequestSortTarget(9)),
    ):
        assert status_of(coord_server.endpoint, "/etcdserverpb.KV/Range", bytes(req)) == (
            Status.INVALID_ARGUMENT,
            "etcdserver: invalid sort option",
        )
