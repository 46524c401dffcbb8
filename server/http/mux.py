"""One client port for gRPC and the HTTP/JSON gateway (etcd's cmux, for asyncio + grpclib).

Theory of operation: :class:`ClientListener` owns asyncio servers (one per client URL, plain or
TLS) whose protocol is a short-lived :class:`_SniffProtocol`. It decides what the connection
speaks and then *hands the transport over* with ``transport.set_protocol()``:

* TLS with ALPN ``h2`` -> gRPC at once; ALPN ``http/1.1`` -> the gateway at once;
* otherwise it buffers the first bytes: if they are the HTTP/2 client preface
  ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` -> gRPC, as soon as they diverge from it -> HTTP/1.1.

For gRPC the new protocol is a :class:`~.h2conn.GrpcConnection` of the listener's
:class:`~.grpcserver.GrpcServer` (coord's own HTTP/2, running grpclib's handlers), for
HTTP/1.1 an ``asyncio.StreamReaderProtocol`` whose callback runs
:meth:`Gateway.serve_connection`; either gets ``connection_made`` and the buffered bytes.
Any HTTP/2 connection goes to gRPC (etcd's Go server can also
serve JSON over HTTP/2; grpclib cannot). With TLS the server's ALPN preference is ``http/1.1``
then ``h2`` (:meth:`coord.server.tls.TLSInfo.server_context`): curl offers both and gets
HTTP/1.1, gRPC clients offer only ``h2`` and get HTTP/2.

TLS ports accept plain TCP sockets themselves and do the handshake (:class:`_TLSPort`), so
that a refused handshake is visible: asyncio's ``create_server(ssl=...)`` drops it silently
(an ``SSLError`` is an OSError, logged only in debug mode). Each accepted socket's first bytes
are peeked at without consuming them (``MSG_PEEK``) before any transport exists: a TLS record
(``0x16``) goes to ``loop.connect_accepted_socket(ssl=...)``, whose failure carries the
reason (and which works alike on asyncio and uvloop, whose transports start reading as soon as
they exist, so a transport cannot be paused in time to peek); anything else is a
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
from typing import cast

from grpclib.server import Server

from coord.server.listen import BACKLOG
from coord.server.tls import address, handshake_error

from .gateway import Gateway
from .grpcserver import GrpcServer

__all__ = ["HANDSHAKE_TIMEOUT", "HTTP2_PREFACE", "ClientListener"]

log = logging.getLogger(__name__)

#: The fixed first 24 bytes of every HTTP/2 connection (RFC 9113 section 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Seconds a TLS client has to send its hello and finish the handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds between attempts when accepting a connection fails (out of file descriptors, ...).
ACCEPT_RETRY = 0.5
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


def _stream_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """A connection's transport as a read-write transport. uvloop's transports have that
    interface without subclassing ``asyncio.Transport``, so this is a cast, not a check."""
    return cast(asyncio.Transport, transport)


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
        self._transport = _stream_transport(transport)
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
        if self._transport is not None:
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


class _TLSPort:
    """A TLS port: its own accept loop, then the peek and the handshake (see the module
    docstring); a handshaken connection goes to :class:`_SniffProtocol`."""

    def __init__(self, listener: ClientListener, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        self._listener = listener
        self.sock = sock
        self._ctx = ctx

    async def serve(self) -> None:
        """Accept connections until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except OSError as e:  # EMFILE and the like: as asyncio's servers do, wait a bit
                log.warning("accepting a TLS connection failed: %s", e)
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            conn.setblocking(False)
            self._listener.track(asyncio.ensure_future(self._accept(conn)))

    async def _accept(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._listener.handshake_timeout
        deadline = loop.time() + timeout
        try:
            peer = address(conn.getpeername())
            head = await asyncio.wait_for(_peek(conn), timeout)
        except TimeoutError:
            log.warning(
                "TLS handshake error from %s: no TLS hello within %gs (handshake timeout)",
                peer,
                timeout,
            )
            conn.close()
            return
        except OSError as e:
            log.debug("TLS connection failed before its hello: %s", e)
            conn.close()
            return
        if not head:  # connected and closed without a byte: a port probe
            conn.close()
            return
        if head[0] != _TLS_HANDSHAKE_RECORD:
            log.warning("TLS handshake error from %s: %s", peer, _plain_text_kind(head))
            if head[:5] in _GO_HTTP_HEADS:  # Go answers only what looks like HTTP/1
                with contextlib.suppress(OSError):
                    conn.send(PLAIN_HTTP_ANSWER)  # a few bytes into an empty socket buffer
            conn.close()
            return
        try:
            await loop.connect_accepted_socket(
                lambda: _SniffProtocol(self._listener),
                conn,
                ssl=self._ctx,
                ssl_handshake_timeout=max(0.1, deadline - loop.time()),
            )
        except (ConnectionAbortedError, TimeoutError):  # the handshake timeout
            log.warning(
                "TLS handshake error from %s: handshake not finished within %gs "
                "(handshake timeout)",
                peer,
                timeout,
            )
        except (OSError, EOFError) as e:
            log.warning("TLS handshake error from %s: %s", peer, handshake_error(e))


async def _peek(sock: socket.socket, size: int = len(HTTP2_PREFACE)) -> bytes:
    """The first bytes a client sent, left unread in ``sock`` (b"" if it closed first)."""
    loop = asyncio.get_running_loop()
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
        self.grpc = GrpcServer(grpc_server)
        self.serves_grpc = serves_grpc
        self.gateway = gateway if gateway is not None else Gateway(grpc_server)
        self.handshake_timeout = handshake_timeout
        self._servers: list[asyncio.base_events.Server] = []
        self._tls_ports: list[_TLSPort] = []
        self._http_tasks: set[asyncio.Task[None]] = set()
        self._http_writers: set[asyncio.StreamWriter] = set()
        self._handshakes: set[asyncio.Task[None]] = set()

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a TLS accept or handshake task until it ends (cancelled by :meth:`close`)."""
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def grpc_protocol(self) -> asyncio.BaseProtocol:
        """The gRPC (HTTP/2) protocol for one accepted connection."""
        return self.grpc.protocol()

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

    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve the listening socket ``sock`` (bound by :func:`coord.server.listen.bind_url`;
        TLS when ``ssl_context`` is given); the listener owns it from now on."""
        if ssl_context is None:
            loop = asyncio.get_running_loop()
            server = await loop.create_server(
                lambda: _SniffProtocol(self), sock=sock, backlog=BACKLOG
            )
            self._servers.append(server)
            return
        sock.listen(BACKLOG)
        sock.setblocking(False)
        port = _TLSPort(self, sock, ssl_context)
        self._tls_ports.append(port)
        self.track(asyncio.ensure_future(port.serve()))

    @property
    def ports(self) -> list[int]:
        """The bound TCP ports (useful with port 0)."""
        plain = [s.sockets[0].getsockname()[1] for s in self._servers if s.sockets]
        return plain + [p.sock.getsockname()[1] for p in self._tls_ports if p.sock.fileno() >= 0]

    def close(self) -> None:
        """Stop accepting; cancel running gRPC requests and drop HTTP connections."""
        for server in self._servers:
            server.close()
        for port in self._tls_ports:
            port.sock.close()
        self.grpc.close()
        for writer in list(self._http_writers):
            writer.close()
        for task in list(self._http_tasks) + list(self._handshakes):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listeners and the running requests are gone."""
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        await self.grpc.wait_closed()
        if self._http_tasks:
            await asyncio.wait(list(self._http_tasks))
