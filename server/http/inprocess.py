"""In-process gRPC calls for the HTTP gateway: a stand-in for grpclib's server ``Stream``.

Theory of operation: etcd's grpc-gateway is a gRPC client of its own member; coord's gateway
(:mod:`.gateway`) instead runs the gRPC handler function in-process, with a
:class:`GatewayStream` (a :class:`~.callstream.CallStream`) in place of the stream an HTTP/2
connection would have given it. The stream feeds the handler the request message(s), encoded
as protobuf by the gateway, and passes each reply to an ``emit`` callback; the handler's final
status is kept on the stream. Requests are held as gRPC frames (:class:`FrameSource`), so a
handler that reads raw frames to check the receive limit before buffering a payload reads the
same bytes an HTTP/2 client would have sent.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from .callstream import CallStream

__all__ = ["FrameSource", "GatewayStream", "NoTransport"]


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


class GatewayStream(CallStream):
    """A :class:`~.callstream.CallStream` for an in-process call from the gateway.

    Requests are protobuf bytes queued by the gateway with :meth:`feed` (then
    :meth:`close_send`, the client's half-close). Every reply, encoded by the server codec, is
    passed to ``emit``. The final status is on the stream after :meth:`run`.
    """

    def __init__(self, *, emit: Callable[[bytes], Awaitable[None]], **call: Any) -> None:
        super().__init__(**call)
        self._emit = emit
        self._stream: FrameSource = FrameSource()

    def feed(self, data: bytes) -> None:
        """Queue one encoded request message."""
        self._stream.feed(data)

    def close_send(self) -> None:
        """The client finished its request body (gRPC half-close)."""
        self._stream.close()

    async def write_messages(self, messages: list[bytes]) -> None:
        """Hand the encoded replies to the HTTP side, one by one."""
        for data in messages:
            await self._emit(data)


class NoTransport(asyncio.BaseTransport):
    """Transport stand-in for internal calls (no peer address, no certificate)."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
