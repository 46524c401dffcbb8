"""In-process gRPC calls for the HTTP gateway: a stand-in for grpclib's server ``Stream``.

Theory of operation: etcd's grpc-gateway is a gRPC client of its own member; coord's gateway
(:mod:`.gateway`) instead runs the gRPC handler function in-process, with a
:class:`GatewayStream` in place of the ``grpclib.server.Stream`` grpclib would have given it.
The stream feeds the handler the request message(s), encoded as protobuf by the gateway, and
passes each reply, encoded by the server's codec, to an ``emit`` callback; the handler's final
status (trailers or a raised ``GRPCError``/``CoordError``) is kept on the stream. The server's
codec and event dispatch (``RecvRequest`` listeners, ...) are used exactly as for gRPC, so both
transports run the same validation, limits and errors. Requests are held as gRPC frames
(:class:`FrameSource`), so a handler that reads raw frames to check the receive limit before
buffering a payload reads the same bytes an HTTP/2 client would have sent.
:class:`GatewayPeer` answers what ``grpclib.protocol.Peer`` answers (address, certificate).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from multidict import MultiDict

from coord.errors import CoordError

__all__ = ["FrameSource", "GatewayPeer", "GatewayStream", "NoTransport"]


class GatewayPeer:
    """What ``grpclib.protocol.Peer`` offers handlers: the remote address and TLS certificate."""

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def addr(self) -> Any:
        """The remote address (``peername``)."""
        return self._transport.get_extra_info("peername")

    def cert(self) -> Any:
        """The client's TLS certificate (``getpeercert()``), None without TLS."""
        ssl_object = self._transport.get_extra_info("ssl_object")
        return None if ssl_object is None else ssl_object.getpeercert()


class FrameSource:
    """The request side of a call as grpclib's protocol stream presents it: gRPC frames
    (1-byte flag, 4-byte length, payload) read with ``recv_data(n)``; ``b""`` after half-close.
    Handlers that read frames themselves
    (:func:`~coord.server.grpclib_compat.h2_stream`) see exactly what an HTTP/2 client would
    have sent."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._closed = False
        self._more = asyncio.Event()

    def feed(self, message: bytes) -> None:
        """Append ``message`` as one uncompressed gRPC frame."""
        self._buf += struct.pack(">?I", False, len(message)) + message
        self._more.set()

    def close(self) -> None:
        """The request side is complete (half-close)."""
        self._closed = True
        self._more.set()

    async def recv_data(self, size: int) -> bytes:
        """The next ``size`` bytes; fewer (possibly none) only after :meth:`close`."""
        while len(self._buf) < size and not self._closed:
            self._more.clear()
            await self._more.wait()
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data


class GatewayStream:
    """Duck-typed ``grpclib.server.Stream`` for an in-process call from the gateway.

    Requests are protobuf bytes queued by the gateway with :meth:`feed` (then
    :meth:`close_send`, the client's half-close); they can be read with ``recv_message`` or,
    as raw gRPC frames, through :func:`~coord.server.grpclib_compat.h2_stream` like grpclib's
    own stream (whose private ``_stream`` attribute this class offers too). Every
    message the handler sends is encoded by the server codec and passed to ``emit``. The final
    status is whatever the handler put in its trailers (or raised as ``GRPCError``).
    """

    def __init__(
        self,
        *,
        method_name: str,
        handler: Any,
        codec: Any,
        dispatch: Any,
        metadata: MultiDict[str],
        peer: GatewayPeer,
        user_agent: str | None,
        emit: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self._handler = handler
        self._codec = codec
        self._dispatch = dispatch
        self._emit = emit
        self._stream = FrameSource()
        self.method_name = method_name
        self.metadata: MultiDict[str] = metadata
        self.peer = peer
        self.user_agent = user_agent
        self.deadline = None
        self.status: Status = Status.OK
        self.status_message: str | None = None
        self.messages_sent = 0

    def feed(self, data: bytes) -> None:
        """Queue one encoded request message."""
        self._stream.feed(data)

    def close_send(self) -> None:
        """The client finished its request body (gRPC half-close)."""
        self._stream.close()

    async def recv_message(self) -> Any:
        """The next request (decoded by the server codec), or None after half-close."""
        prefix = await self._stream.recv_data(5)
        if len(prefix) < 5:
            return None
        _, length = struct.unpack(">?I", prefix)
        data = await self._stream.recv_data(length)
        message = self._codec.decode(data, self._handler.request_type)
        (message,) = await self._dispatch.recv_message(message)
        return message

    def __aiter__(self) -> GatewayStream:
        return self

    async def __anext__(self) -> Any:
        message = await self.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message

    async def send_initial_metadata(self, *, metadata: Any = None) -> None:
        """Accepted and ignored (HTTP headers are written with the first message)."""

    async def send_message(self, message: Any) -> None:
        """Encode ``message`` with the server codec and hand it to the HTTP side."""
        (message,) = await self._dispatch.send_message(message)
        await self._emit(self._codec.encode(message, self._handler.reply_type))
        self.messages_sent += 1

    async def send_trailing_metadata(
        self,
        *,
        status: Status = Status.OK,
        status_message: str | None = None,
        status_details: Any = None,
        metadata: Any = None,
    ) -> None:
        """Record the call's final status."""
        self.status = status
        self.status_message = status_message

    async def cancel(self) -> None:
        """Handlers may cancel their own stream: end it as CANCELLED."""
        self.status = Status.CANCELLED
        raise asyncio.CancelledError

    async def run(self) -> None:
        """Run the handler; a raised ``GRPCError``/``CoordError`` becomes the final status."""
        try:
            _, func = await self._dispatch.recv_request(
                self.metadata,
                self._handler.func,
                method_name=self.method_name,
                deadline=None,
                content_type="application/grpc+proto",
                user_agent=self.user_agent,
                peer=self.peer,
            )
            await func(self)
        except GRPCError as e:
            self.status, self.status_message = e.status, e.message
        except CoordError as e:
            self.status, self.status_message = Status(int(e.code)), e.message


class NoTransport(asyncio.BaseTransport):
    """Transport stand-in for internal calls (no peer address, no certificate)."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
