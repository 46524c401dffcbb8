"""A gRPC call as grpclib's handlers see it, whatever carries it: the duck-typed server stream.

Theory of operation. coord's service handlers are grpclib handlers: ``async def
handler(stream)`` reading requests and sending replies through a ``grpclib.server.Stream``.
Two transports run them without grpclib's own protocol: the lean HTTP/2 server
(:mod:`.h2conn`) and the JSON gateway's in-process calls (:mod:`.inprocess`). Both give the
handler a :class:`CallStream`: the request side is a byte source of gRPC frames (1-byte flag,
4-byte length, payload) read with ``recv_data(n)`` (offered as ``_stream`` too, where
grpclib's stream keeps its HTTP/2 stream, so :func:`~coord.server.grpclib_compat.h2_stream`
reads frames the same way from all three), and each reply goes, encoded by the server's
codec, to the transport's :meth:`CallStream.write_messages`. The server's codec and event
dispatch (``RecvRequest``, ``RecvMessage``, ``SendMessage`` listeners) are used exactly as
grpclib's server uses them, so every transport runs the same validation, limits and errors.

:meth:`CallStream.run` runs the handler and leaves the call's final status on the stream, as
grpclib's server does: a ``GRPCError`` (or coord's ``CoordError``) raised by the handler is the
status; a unary handler that returned without a reply is ``UNKNOWN``. Anything else raised
propagates to the transport, which reports it as grpclib does (``UNKNOWN``, "Internal Server
Error", and a logged traceback).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from multidict import MultiDict

from coord.errors import CoordError
from coord.server.api.rawcodec import RawCodec
from coord.server.grpclib_compat import FrameReader, sends_unobserved

__all__ = ["CallStream", "TransportPeer"]


class TransportPeer:
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


class CallStream:
    """Duck-typed ``grpclib.server.Stream`` for one call of ``handler`` (a grpclib
    ``Handler``: ``func``, ``cardinality``, ``request_type``, ``reply_type``).

    Subclasses provide the request bytes (``_stream``, a
    :class:`~coord.server.grpclib_compat.FrameReader`) and :meth:`write_messages`;
    ``status``/``status_message`` hold the final status after :meth:`run`.
    """

    _stream: FrameReader

    def __init__(
        self,
        *,
        method_name: str,
        handler: Any,
        codec: Any,
        dispatch: Any,
        metadata: MultiDict[str],
        peer: TransportPeer,
        user_agent: str | None,
        deadline: Any = None,
        content_type: str = "application/grpc+proto",
    ) -> None:
        self._handler = handler
        self._codec = codec
        self._dispatch = dispatch
        self._content_type = content_type
        self.method_name = method_name
        self.metadata: MultiDict[str] = metadata
        self.peer = peer
        self.user_agent = user_agent
        self.deadline = deadline
        self.status: Status = Status.OK
        self.status_message: str | None = None
        self.messages_sent = 0

    async def write_messages(self, messages: list[bytes]) -> None:
        """Carry encoded replies to the client (the transport's part)."""
        raise NotImplementedError

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

    def __aiter__(self) -> CallStream:
        return self

    async def __anext__(self) -> Any:
        message = await self.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message

    async def send_initial_metadata(self, *, metadata: Any = None) -> None:
        """Accepted and ignored (the response headers go out with the first reply)."""

    async def send_message(self, message: Any) -> None:
        """Encode ``message`` with the server codec and hand it to the transport."""
        await self.send_messages([message])

    async def send_messages(self, messages: list[Any]) -> None:
        """Send ``messages`` in order, handed to the transport together (one write for a
        batch of watch responses, not one per response)."""
        if type(self._codec) is RawCodec and sends_unobserved(self._dispatch):
            # nothing to dispatch to, and the codec passes bytes through as they are
            encoded = [m if type(m) is bytes else self._codec.encode(m, None) for m in messages]
        else:
            encoded = []
            for message in messages:
                (message,) = await self._dispatch.send_message(message)
                encoded.append(self._codec.encode(message, self._handler.reply_type))
        await self.write_messages(encoded)
        self.messages_sent += len(encoded)

    async def send_trailing_metadata(
        self,
        *,
        status: Status = Status.OK,
        status_message: str | None = None,
        status_details: Any = None,
        metadata: Any = None,
    ) -> None:
        """Record the call's final status (the transport sends it when the handler ends)."""
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
                deadline=self.deadline,
                content_type=self._content_type,
                user_agent=self.user_agent,
                peer=self.peer,
            )
            await func(self)
        except GRPCError as e:
            self.status, self.status_message = e.status, e.message
        except CoordError as e:
            self.status, self.status_message = Status(int(e.code)), e.message
        else:
            if (
                self.status is Status.OK
                and not self.messages_sent
                and not self._handler.cardinality.server_streaming
            ):
                self.status, self.status_message = Status.UNKNOWN, "Internal Server Error"
