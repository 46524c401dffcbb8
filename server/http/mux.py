"""One client port for gRPC and the HTTP/JSON gateway (etcd's cmux, for asyncio + grpclib).

Theory of operation: :class:`ClientListener` owns asyncio servers (one per client URL, plain or
TLS) whose protocol is a short-lived :class:`_SniffProtocol`. It decides what the connection
speaks and then *hands the transport over* with ``transport.set_protocol()``:

* TLS with ALPN ``h2`` -> gRPC at once; ALPN ``http/1.1`` -> the gateway at once;
* otherwise it buffers the first bytes: if they are the HTTP/2 client preface
  ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` -> gRPC, as soon as they diverge from it -> HTTP/1.1.

For gRPC the new protocol is exactly what ``grpclib.server.Server`` would have created for an
accepted connection (:func:`~coord.server.grpclib_compat.new_server_protocol`, an
``H2Protocol`` bound to a fresh per-connection handler that the server tracks and closes; see
:func:`~coord.server.grpclib_compat.server_handlers`), so grpclib behaves as if it had
accepted the socket itself; we call its ``connection_made`` and feed it the buffered bytes. For
HTTP/1.1 the new protocol is an ``asyncio.StreamReaderProtocol`` whose callback runs
:meth:`Gateway.serve_connection`. Any HTTP/2 connection goes to gRPC (etcd's Go server can also
serve JSON over HTTP/2; grpclib cannot). With TLS the server's ALPN preference is ``http/1.1``
then ``h2`` (:meth:`coord.server.tls.TLSInfo.server_context`): curl offers both and gets
HTTP/1.1, gRPC clients offer only ``h2`` and get HTTP/2.

TLS ports accept plain TCP and do the handshake themselves (:class:`_TLSAcceptor`), so that a
refused handshake is visible: asyncio's ``create_server(ssl=...)`` drops it silently (an
``SSLError`` is an OSError, logged only in debug mode). The acceptor peeks at the first bytes
without consuming them (``MSG_PEEK`` on a duplicate of the socket): a TLS record (``0x16``)
is upgraded with ``loop.start_tls()``, whose failure carries the reason; anything else is a
client speaking plain text to a TLS port: an HTTP/1 request gets Go's answer ``HTTP/1.0 400
Bad Request ... Client sent an HTTP request to an HTTPS server.`` (so curl shows it), and the
rest (a plain gRPC client's HTTP/2 preface) is closed, as Go does. Every refusal is one
WARNING line with the peer address and the reason, like etcd's ``http: TLS handshake error
from 127.0.0.1:54321: tls: client didn't provide a certificate``; a client that connects and
closes without a byte (a port probe) is not logged. A handshake (peek included) must finish
within :data:`HANDSHAKE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

from grpclib.server import Server

from coord.server.grpclib_compat import new_server_protocol, server_handlers
from coord.server.listen import BACKLOG
from coord.server.tls import address, handshake_error

from .gateway import Gateway

__all__ = ["HANDSHAKE_TIMEOUT", "HTTP2_PREFACE", "ClientListener"]

log = logging.getLogger(__name__)

#: The fixed first 24 bytes of every HTTP/2 connection (RFC 9113 section 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Seconds a TLS client has to send its hello and finish the handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Go's net/http answer to plain HTTP on a TLS port.
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_TLS_HANDSHAKE_RECORD = 0x16
#: The first 5 bytes for which Go's crypto/tls writes :data:`PLAIN_HTTP_ANSWER`
#: (tlsRecordHeaderLooksLikeHTTP); anything else, the HTTP/2 preface included, is just closed.
_GO_HTTP_HEADS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
_HTTP_METHODS = (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC")


def _plain_text_kind(head: bytes) -> str:
    if HTTP2_PREFACE.startswith(head[: len(HTTP2_PREFACE)]) and head[:3] == b"PRI":
        return "client sent a plain-text HTTP/2 (gRPC without TLS) request to an HTTPS server"
    if head[:4] in _HTTP_METHODS:
        return "client sent an HTTP request to an HTTPS server"
    return "tls: first record does not look like a TLS handshake"


def _peer(transport: asyncio.BaseTransport) -> str:
    return address(transport.get_extra_info("peername"))


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
        elif self._buf:
            self._sniff()

    def data_received(self, data: bytes) -> None:
        if self._done:  # pragma: no cover - set_protocol routes further data elsewhere
            return
        self._buf += data
        if self._transport is None:  # TLS: app data right after the handshake, before
            return  # connection_made (see _TLSAcceptor)
        self._sniff()

    def _sniff(self) -> None:
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
        new: asyncio.BaseProtocol = (
            self._listener.grpc_protocol()
            if grpc and self._listener.serves_grpc
            else self._listener.http_protocol()  # refuses an HTTP/2 preface with a 400
        )
        transport.set_protocol(new)
        new.connection_made(transport)
        data, self._buf = self._buf, b""
        if data and not transport.is_closing():
            assert isinstance(new, asyncio.Protocol)
            new.data_received(data)


class _TLSAcceptor(asyncio.Protocol):
    """A TLS port's plain TCP connection until its handshake is done (see the module
    docstring); then :class:`_SniffProtocol` takes the TLS transport."""

    def __init__(self, listener: ClientListener, ctx: ssl.SSLContext) -> None:
        self._listener = listener
        self._ctx = ctx
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # nothing is consumed until the first bytes are peeked at
        self._task = asyncio.ensure_future(self._accept(transport))
        self._listener.track(self._task)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    async def _accept(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        peer = _peer(transport)
        deadline = loop.time() + self._listener.handshake_timeout
        try:
            head = await asyncio.wait_for(_peek(transport), self._listener.handshake_timeout)
        except TimeoutError:
            log.warning(
                "TLS handshake error from %s: no TLS hello within %gs (handshake timeout)",
                peer,
                self._listener.handshake_timeout,
            )
            transport.abort()
            return
        except OSError as e:
            log.debug("TLS connection from %s failed before its hello: %s", peer, e)
            transport.abort()
            return
        if not head:  # connected and closed without a byte: a port probe
            transport.close()
            return
        if head[0] != _TLS_HANDSHAKE_RECORD:
            log.warning("TLS handshake error from %s: %s", peer, _plain_text_kind(head))
            if head[:5] in _GO_HTTP_HEADS:  # Go answers only what looks like HTTP/1
                transport.write(PLAIN_HTTP_ANSWER)
            transport.close()
            return
        sniff = _SniffProtocol(self._listener)
        try:
            tls_transport = await loop.start_tls(
                transport,
                sniff,
                self._ctx,
                server_side=True,
                ssl_handshake_timeout=max(0.1, deadline - loop.time()),
            )
        except ConnectionAbortedError:  # asyncio's handshake timeout
            log.warning(
                "TLS handshake error from %s: handshake not finished within %gs "
                "(handshake timeout)",
                peer,
                self._listener.handshake_timeout,
            )
            return
        except (OSError, EOFError) as e:
            log.warning("TLS handshake error from %s: %s", peer, handshake_error(e))
            return
        if tls_transport is None:  # pragma: no cover - the transport closed meanwhile
            return
        sniff.connection_made(tls_transport)


async def _peek(transport: asyncio.Transport, size: int = len(HTTP2_PREFACE)) -> bytes:
    """The first bytes a client sent, left unread in the socket (b"" if it closed first)."""
    loop = asyncio.get_running_loop()
    # a duplicate descriptor of the same socket: the transport's own descriptor belongs to it
    sock: socket.socket = transport.get_extra_info("socket").dup()
    try:
        sock.setblocking(False)
        while True:
            try:
                return sock.recv(size, socket.MSG_PEEK)
            except BlockingIOError:
                pass
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _set_done, readable)
            try:
                await readable
            finally:
                loop.remove_reader(sock.fileno())
    finally:
        sock.close()


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ClientListener:
    """Serves gRPC and etcd's JSON gateway on the same sockets (one per client URL).

    ``grpc_server`` is a ``grpclib.server.Server`` that is *not* started itself; this listener
    accepts the connections for it. :meth:`close` stops accepting, closes the gRPC handlers the
    way ``Server.close`` does and drops open HTTP connections.
    """

    def __init__(
        self,
        grpc_server: Server,
        gateway: Gateway | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        serves_grpc: bool = True,
    ) -> None:
        """``serves_grpc=False``: HTTP/1.1 only (a ``--listen-metrics-urls`` listener)."""
        self.grpc_server = grpc_server
        self.serves_grpc = serves_grpc
        self.gateway = gateway if gateway is not None else Gateway(grpc_server)
        self.handshake_timeout = handshake_timeout
        self._servers: list[asyncio.base_events.Server] = []
        self._http_tasks: set[asyncio.Task[None]] = set()
        self._http_writers: set[asyncio.StreamWriter] = set()
        self._handshakes: set[asyncio.Task[None]] = set()

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a TLS handshake task until it ends (cancelled by :meth:`close`)."""
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def grpc_protocol(self) -> asyncio.BaseProtocol:
        """A grpclib server protocol for one accepted connection."""
        return new_server_protocol(self.grpc_server)

    def http_protocol(self) -> asyncio.BaseProtocol:
        """An HTTP/1.1 (h11 gateway) protocol for one accepted connection."""
        reader = asyncio.StreamReader(limit=2**16)

        def connected(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._serve_http(r, w))
            self._http_tasks.add(task)
            task.add_done_callback(self._http_tasks.discard)

        return asyncio.StreamReaderProtocol(reader, connected)

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._http_writers.add(writer)
        try:
            await self.gateway.serve_connection(reader, writer)
        except Exception:
            log.exception("HTTP gateway connection failed")
        finally:
            self._http_writers.discard(writer)

    async def start(
        self,
        sock: socket.socket,
        ssl_context: ssl.SSLContext | None = None,
    ) -> asyncio.base_events.Server:
        """Serve the listening socket ``sock`` (bound by :func:`coord.server.listen.bind_url`;
        TLS when ``ssl_context`` is given); the listener owns it from now on."""
        loop = asyncio.get_running_loop()
        factory: Any = (
            (lambda: _SniffProtocol(self))
            if ssl_context is None
            else (lambda: _TLSAcceptor(self, ssl_context))
        )
        server = await loop.create_server(factory, sock=sock, backlog=BACKLOG)
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
        for handler in server_handlers(self.grpc_server):
            handler.close()
        for writer in list(self._http_writers):
            writer.close()
        for task in list(self._http_tasks) + list(self._handshakes):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listeners and the running requests are gone."""
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        handlers = server_handlers(self.grpc_server)
        if handlers:
            await asyncio.wait([asyncio.ensure_future(h.wait_closed()) for h in handlers])
        if self._http_tasks:
            await asyncio.wait(list(self._http_tasks))
