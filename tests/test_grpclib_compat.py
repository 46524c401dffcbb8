"""Every grpclib internal coord uses, exercised against a real grpclib Server and Channel.

coord/_grpclib_compat.py (client) and server/grpclib_compat.py (server) are the only modules
that touch grpclib's private attributes. Each access is checked here on loopback, so a grpclib
upgrade that moves one fails here, by name, and not somewhere deep in a transport test; and
each side's version check refuses a grpclib it was not checked against.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpclib
import pytest
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality
from grpclib.events import RecvMessage, RecvRequest, SendMessage, listen
from grpclib.exceptions import StreamTerminatedError
from grpclib.server import Server, Stream
from multidict import MultiDict
from support import close_channel
from unwrap import unwrap

from coord import _grpclib_compat as client_compat
from coord.server import grpclib_compat as server_compat
from coord.server.api.rawcodec import RawCodec
from coord.server.http.callstream import TransportPeer
from coord.server.http.grpcserver import GrpcServer
from coord.server.http.inprocess import GatewayStream, NoTransport

ECHO = "/test.Toy/Echo"  # unary: the request bytes back
FRAMES = "/test.Toy/Frames"  # unary, read as raw frames through h2_stream
HOLD = "/test.Toy/Hold"  # bidi: answers b"open", then waits for the client's end


def _frame(data: bytes) -> bytes:
    return struct.pack(">?I", False, len(data)) + data


class _Toy:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.ended = asyncio.Event()

    async def echo(self, stream: Stream[Any, Any]) -> None:
        await stream.send_message(await stream.recv_message())

    async def read_frames(self, stream: Stream[Any, Any]) -> None:
        frames = server_compat.h2_stream(stream)
        prefix = await frames.recv_data(5)
        (length,) = struct.unpack(">I", prefix[1:])
        self.frames += [prefix, await frames.recv_data(length), await frames.recv_data(5)]
        await stream.send_message(b"ok")

    async def hold(self, stream: Stream[Any, Any]) -> None:
        await stream.send_message(b"open")
        try:
            while await stream.recv_message() is not None:
                pass
        finally:
            self.ended.set()

    def __mapping__(self) -> dict[str, server_compat.MethodHandler]:
        def unary(
            func: Callable[[Stream[Any, Any]], Awaitable[None]],
            cardinality: Cardinality = Cardinality.UNARY_UNARY,
        ) -> server_compat.MethodHandler:
            return server_compat.MethodHandler(func, cardinality, bytes, bytes)

        return {
            ECHO: unary(self.echo),
            FRAMES: unary(self.read_frames),
            HOLD: unary(self.hold, Cardinality.STREAM_STREAM),
        }


@asynccontextmanager
async def _serving(toy: _Toy) -> AsyncIterator[tuple[GrpcServer, int]]:
    """``toy`` served on a loopback port by coord's own HTTP/2 connections
    (:class:`GrpcServer`, as coord's listener does), not by ``Server.start``."""
    grpc = GrpcServer(Server([toy], codec=RawCodec()))
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(grpc.protocol, "127.0.0.1", 0)
    try:
        yield grpc, listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        grpc.close()
        await grpc.wait_closed()
        await listener.wait_closed()


class _Recording(client_compat.H2Protocol):
    """A client protocol that keeps every byte the server sent."""

    def __init__(self, handler: Any, config: Any, h2_config: Any) -> None:
        super().__init__(handler, config, h2_config)
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data
        super().data_received(data)


class _CountingTransport:
    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _channel(
    port: int, made: list[_Recording] | None = None, **kwargs: Any
) -> client_compat.ClientChannel:
    def factory(handler: Any, config: Configuration, h2_config: Any) -> _Recording:
        proto = _Recording(handler, config, h2_config)
        if made is not None:
            made.append(proto)
        return proto

    return client_compat.ClientChannel(
        "127.0.0.1", port, protocol_factory=factory, codec=RawCodec(), **kwargs
    )


@asynccontextmanager
async def _toy_channel(
    toy: _Toy | None = None, **kwargs: Any
) -> AsyncIterator[client_compat.ClientChannel]:
    """A client channel (:func:`_channel`) to a toy server on loopback, closed afterwards."""
    async with _serving(toy or _Toy()) as (_, port):
        ch = _channel(port, **kwargs)
        try:
            yield ch
        finally:
            await close_channel(ch)


async def _unary(ch: Channel, path: str, request: bytes) -> bytes:
    async with ch.request(path, Cardinality.UNARY_UNARY, bytes, bytes) as stream:
        await stream.send_message(request, end=True)
        return unwrap(await stream.recv_message())


# -------------------------------------------------------------------------------------- server


def test_server_mapping_codec_served_by_coords_connections() -> None:
    async def main() -> None:
        toy = _Toy()
        server = Server([toy], codec=RawCodec())
        mapping = server_compat.server_mapping(server)
        assert set(mapping) == {ECHO, FRAMES, HOLD}
        assert mapping[ECHO].func == toy.echo
        assert isinstance(server_compat.server_codec(server), RawCodec)
        async with _serving(toy) as (grpc, port):
            assert grpc.connections == set()
            ch = Channel("127.0.0.1", port, codec=RawCodec())
            try:
                assert await _unary(ch, ECHO, b"hello") == b"hello"
                assert len(grpc.connections) == 1
                grpc.close()  # as ClientListener.close does: the connection goes
                await asyncio.wait_for(grpc.wait_closed(), 5)
                deadline = asyncio.get_running_loop().time() + 5
                while grpc.connections:  # closed: connection_lost follows within a turn or two
                    assert asyncio.get_running_loop().time() < deadline, "connection not closed"
                    await asyncio.sleep(0.01)
            finally:
                await close_channel(ch)

    asyncio.run(main())


def test_server_h2_stream_reads_raw_frames() -> None:
    async def main() -> None:
        toy = _Toy()
        async with _serving(toy) as (_, port):
            ch = Channel("127.0.0.1", port, codec=RawCodec())
            try:
                assert await _unary(ch, FRAMES, b"payload") == b"ok"
            finally:
                await close_channel(ch)
        assert toy.frames == [_frame(b"payload")[:5], b"payload", b""]  # b"": end of stream

    asyncio.run(main())


def test_server_dispatch_runs_the_servers_listeners() -> None:
    async def main() -> None:
        server = Server([_Toy()], codec=RawCodec())
        seen: list[str] = []

        async def on_request(event: RecvRequest) -> None:
            seen.append(f"request {event.method_name} {event.user_agent}")

        async def on_recv(event: RecvMessage) -> None:
            seen.append(f"recv {event.message!r}")

        async def on_send(event: SendMessage) -> None:
            seen.append(f"send {event.message!r}")

        listen(server, RecvRequest, on_request)
        listen(server, RecvMessage, on_recv)
        listen(server, SendMessage, on_send)
        dispatch = server_compat.server_dispatch(server)
        assert isinstance(dispatch, server_compat.ServerDispatch)
        func = server_compat.server_mapping(server)[ECHO].func
        _, got = await dispatch.recv_request(
            MultiDict(),
            func,
            method_name=ECHO,
            deadline=None,
            content_type="application/grpc+proto",
            user_agent="ua",
            peer=None,
        )
        assert got == func
        assert await dispatch.recv_message(b"in") == (b"in",)
        assert await dispatch.send_message(b"out") == (b"out",)
        assert seen == [f"request {ECHO} ua", "recv b'in'", "send b'out'"]

    asyncio.run(main())


def test_sends_unobserved_until_a_send_listener_exists() -> None:
    async def main() -> None:
        server = Server([_Toy()], codec=RawCodec())
        assert server_compat.sends_unobserved(server_compat.server_dispatch(server))
        listen(server, RecvMessage, _no_op)  # another event: sending stays unobserved
        assert server_compat.sends_unobserved(server_compat.server_dispatch(server))
        listen(server, SendMessage, _no_op)
        assert not server_compat.sends_unobserved(server_compat.server_dispatch(server))

    asyncio.run(main())


async def _no_op(event: Any) -> None:
    pass


def test_server_h2_stream_of_the_gateways_stream() -> None:
    async def main() -> None:
        server = Server([_Toy()], codec=RawCodec())
        replies: list[bytes] = []

        async def emit(data: bytes) -> None:
            replies.append(data)

        stream = GatewayStream(
            method_name=FRAMES,
            handler=server_compat.server_mapping(server)[FRAMES],
            codec=server_compat.server_codec(server),
            dispatch=server_compat.server_dispatch(server),
            metadata=MultiDict(),
            peer=TransportPeer(NoTransport()),
            user_agent=None,
            emit=emit,
        )
        stream.feed(b"abc")
        stream.close_send()
        frames = server_compat.h2_stream(stream)  # type: ignore[arg-type]
        assert await frames.recv_data(5) == _frame(b"abc")[:5]
        assert await frames.recv_data(3) == b"abc"
        assert await frames.recv_data(5) == b""

    asyncio.run(main())


# -------------------------------------------------------------------------------------- client


def test_client_channel_protocol_connect_and_close() -> None:
    async def main() -> None:
        async with _serving(_Toy()) as (_, port):
            made: list[_Recording] = []
            ch = _channel(port, made)
            assert client_compat.channel_protocol(ch) is None
            assert client_compat.connected_protocol(ch) is None
            assert client_compat.channel_ssl(ch) is None
            proto = await client_compat.connect_channel(ch)
            assert made == [proto]  # built by our factory
            assert client_compat.channel_protocol(ch) is proto
            assert client_compat.connected_protocol(ch) is proto
            assert client_compat.protocol_open(proto)
            assert await client_compat.connect_channel(ch) is proto  # connected: no new one
            assert await _unary(ch, ECHO, b"x") == b"x"
            await close_channel(ch)
            assert client_compat.channel_protocol(ch) is None
            assert client_compat.connected_protocol(ch) is None
            assert not client_compat.protocol_open(proto)

    asyncio.run(main())


def test_client_protocol_open_before_connection_made() -> None:
    async def main() -> None:
        made: list[_Recording] = []
        ch = _channel(1, made)
        proto = ch._protocol_factory()  # what asyncio calls before connection_made
        assert not client_compat.protocol_open(proto)
        await close_channel(ch)

    asyncio.run(main())


def test_client_channel_ssl() -> None:
    async def main() -> None:
        ctx = ssl.create_default_context()
        ch = _channel(1, ssl=ctx)
        assert client_compat.channel_ssl(ch) is ctx
        await close_channel(ch)

    asyncio.run(main())


def test_client_replace_transport_and_send_ping() -> None:
    async def main() -> None:
        async with _toy_channel() as ch:
            proto = await client_compat.connect_channel(ch)
            assert isinstance(proto, _Recording)
            original = client_compat.protocol_transport(proto)
            assert isinstance(original, asyncio.Transport)
            counting = _CountingTransport(original)
            client_compat.replace_transport(proto, counting)
            current: object = client_compat.protocol_transport(proto)  # now not a Transport
            assert current is counting
            assert await _unary(ch, ECHO, b"y") == b"y"  # the new stream wrote through it
            writes = counting.writes
            assert writes > 0
            client_compat.send_ping(proto, b"compat\x00\x01")
            assert counting.writes > writes
            ack = struct.pack(">I", 8)[1:] + b"\x06\x01" + b"\x00" * 4 + b"compat\x00\x01"
            for _ in range(500):
                if ack in proto.received:
                    break
                await asyncio.sleep(0.01)
            assert ack in proto.received  # the server's PING ACK, our payload

    asyncio.run(main())


def test_client_close_protocol_terminates_streams() -> None:
    async def main() -> None:
        async with (
            _toy_channel() as ch,
            ch.request(HOLD, Cardinality.STREAM_STREAM, bytes, bytes) as stream,
        ):
            await stream.send_request()
            assert await stream.recv_message() == b"open"
            proto = client_compat.channel_protocol(ch)
            assert proto is not None
            client_compat.close_protocol(proto, "compat test")
            assert not client_compat.protocol_open(proto)
            assert client_compat.connected_protocol(ch) is None  # seen lost
            assert client_compat.channel_protocol(ch) is proto  # but still the latest
            with pytest.raises(StreamTerminatedError, match="compat test"):
                await stream.recv_message()

    asyncio.run(main())


def test_client_end_and_reset_a_stream_locally() -> None:
    """The steps of coord._conn.close_stream: END_STREAM, RST_STREAM, marked cancelled; the
    stream's context then ends at once, without waiting for trailers or raising."""

    async def main() -> None:
        toy = _Toy()
        async with _toy_channel(toy) as ch:
            async with ch.request(HOLD, Cardinality.STREAM_STREAM, bytes, bytes) as stream:
                await stream.send_request()
                assert await stream.recv_message() == b"open"
                h2s = client_compat.h2_stream(stream)
                assert isinstance(h2s, client_compat.ProtocolStream)
                assert h2s.closable
                assert not client_compat.end_sent(stream)
                client_compat.send_end_nowait(stream)
                assert client_compat.end_sent(stream)
                h2s.reset_nowait()
                client_compat.mark_cancelled(stream)
            await asyncio.wait_for(toy.ended.wait(), 5)  # the server saw the stream end
            assert not h2s.closable
            assert await _unary(ch, ECHO, b"z") == b"z"  # the connection is fine

    asyncio.run(main())


def test_client_keepalive_config_pings_while_a_stream_is_open() -> None:
    config = client_compat.keepalive_config(0.1)
    assert config._keepalive_time == 0.1
    assert config._keepalive_timeout == 0.05
    assert config._http2_max_pings_without_data == 0
    assert config._http2_min_sent_ping_interval_without_data == 0.1

    async def main() -> None:
        async with (
            _toy_channel(config=config) as ch,
            ch.request(HOLD, Cardinality.STREAM_STREAM, bytes, bytes) as stream,
        ):
            await stream.send_request()
            assert await stream.recv_message() == b"open"
            proto = client_compat.channel_protocol(ch)
            assert isinstance(proto, _Recording)
            for _ in range(200):
                if proto.connection.last_ping_sent is not None:
                    break
                await asyncio.sleep(0.01)
            assert proto.connection.last_ping_sent is not None  # grpclib pinged
            assert client_compat.protocol_open(proto)  # and got its ACK in time
            await stream.send_message(b"", end=True)

    asyncio.run(main())


# ------------------------------------------------------------------------------------ versions


@pytest.mark.parametrize("compat", [client_compat, server_compat], ids=["client", "server"])
def test_version_check_rejects_an_unchecked_grpclib(
    compat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert grpclib.__version__ in compat.SUPPORTED_VERSIONS  # what is installed passed
    compat.check_version()
    monkeypatch.setattr(grpclib, "__version__", "0.5.0")
    with pytest.raises(
        ImportError,
        match=r"grpclib 0\.5\.0 is installed, but coord.* supports "
        r"only grpclib 0\.4\.9",
    ):
        compat.check_version()
