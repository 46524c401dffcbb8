"""One client port for gRPC and the HTTP/JSON gateway (etcd's cmux, for asyncio + grpclib).

Theory of operation: :class:`ClientListener` owns asyncio servers (one per client URL, plain or
TLS) whose protocol is a short-lived :class:`_SniffProtocol`. It decides what the connection
speaks and then *hands the transport over* with ``transport.set_protocol()``:

* TLS with ALPN ``h2`` -> gRPC at once; ALPN ``http/1.1`` -> the gateway at once;
* otherwise it buffers the first bytes: if they are the HTTP/2 client preface
  ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` -> gRPC, as soon as they diverge from it -> HTTP/1.1.

For gRPC the new protocol is exactly what ``grpclib.server.Server`` would have created for an
accepted connection (``server._protocol_factory()``, an ``H2Protocol`` bound to a fresh
per-connection handler that the server tracks and closes), so grpclib behaves as if it had
accepted the socket itself; we call its ``connection_made`` and feed it the buffered bytes. For
HTTP/1.1 the new protocol is an ``asyncio.StreamReaderProtocol`` whose callback runs
:meth:`Gateway.serve_connection`. Any HTTP/2 connection goes to gRPC (etcd's Go server can also
serve JSON over HTTP/2; grpclib cannot). With TLS the server's ALPN preference is ``http/1.1``
then ``h2`` (:meth:`coord.server.tls.TLSInfo.server_context`): curl offers both and gets
HTTP/1.1, gRPC clients offer only ``h2`` and get HTTP/2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

from coord.server.listen import BACKLOG

from .gateway import Gateway

__all__ = ["HTTP2_PREFACE", "ClientListener"]

log = logging.getLogger(__name__)

#: The fixed first 24 bytes of every HTTP/2 connection (RFC 9113 section 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _SniffProtocol(asyncio.Protocol):
    """Buffers a connection's first bytes until it knows whether it is gRPC or HTTP/1.1."""

    def __init__(self, listener: ClientListener) -> None:
        self._listener = listener
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2":
            self._switch(grpc=True)
        elif alpn == "http/1.1":
            self._switch(grpc=False)

    def data_received(self, data: bytes) -> None:
        if self._done:  # pragma: no cover - set_protocol routes further data elsewhere
            return
        self._buf += data
        n = min(len(self._buf), len(HTTP2_PREFACE))
        if self._buf[:n] != HTTP2_PREFACE[:n]:
            self._switch(grpc=False)
        elif n == len(HTTP2_PREFACE):
            self._switch(grpc=True)

    def eof_received(self) -> bool | None:
        if self._transport is not None and not self._done:
            self._transport.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True

    def _switch(self, grpc: bool) -> None:
        transport = self._transport
        assert transport is not None
        self._done = True
        new: asyncio.BaseProtocol = (self._listener.grpc_protocol() if grpc
                                     else self._listener.http_protocol())
        transport.set_protocol(new)
        new.connection_made(transport)
        data, self._buf = self._buf, b""
        if data and not transport.is_closing():
            assert isinstance(new, asyncio.Protocol)
            new.data_received(data)


class ClientListener:
    """Serves gRPC and etcd's JSON gateway on the same sockets (one per client URL).

    ``grpc_server`` is a ``grpclib.server.Server`` that is *not* started itself; this listener
    accepts the connections for it. :meth:`close` stops accepting, closes the gRPC handlers the
    way ``Server.close`` does and drops open HTTP connections.
    """

    def __init__(self, grpc_server: Any, gateway: Gateway | None = None) -> None:
        self.grpc_server = grpc_server
        self.gateway = gateway if gateway is not None else Gateway(grpc_server)
        self._servers: list[asyncio.base_events.Server] = []
        self._http_tasks: set[asyncio.Task[None]] = set()
        self._http_writers: set[asyncio.StreamWriter] = set()

    def grpc_protocol(self) -> asyncio.BaseProtocol:
        """A grpclib server protocol for one accepted connection."""
        protocol: asyncio.BaseProtocol = self.grpc_server._protocol_factory()
        return protocol

    def http_protocol(self) -> asyncio.BaseProtocol:
        """An HTTP/1.1 (h11 gateway) protocol for one accepted connection."""
        reader = asyncio.StreamReader(limit=2**16)

        def connected(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._serve_http(r, w))
            self._http_tasks.add(task)
            task.add_done_callback(self._http_tasks.discard)

        return asyncio.StreamReaderProtocol(reader, connected)

    async def _serve_http(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self._http_writers.add(writer)
        try:
            await self.gateway.serve_connection(reader, writer)
        except Exception:
            log.exception("HTTP gateway connection failed")
        finally:
            self._http_writers.discard(writer)

    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None,
                    ) -> asyncio.base_events.Server:
        """Serve the listening socket ``sock`` (bound by :func:`coord.server.listen.bind_url`;
        TLS when ``ssl_context`` is given); the listener owns it from now on."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _SniffProtocol(self), sock=sock,
                                          ssl=ssl_context, backlog=BACKLOG)
        self._servers.append(server)
        return server

    @property
    def ports(self) -> list[int]:
        """The bound TCP ports (useful with port 0)."""
        return [s.sockets[0].getsockname()[1] for s in self._servers if s.sockets]

    def close(self) -> None:
        """Stop accepting; cancel running gRPC requests and drop HTTP connections."""
        for server in self._servers:
            server.close()
        for handler in list(self.grpc_server._handlers):
            handler.close()
        for writer in list(self._http_writers):
            writer.close()
        for task in list(self._http_tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listeners and the running requests are gone."""
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        handlers = list(self.grpc_server._handlers)
        if handlers:
            await asyncio.wait([asyncio.ensure_future(h.wait_closed()) for h in handlers])
        if self._http_tasks:
            await asyncio.wait(list(self._http_tasks))
