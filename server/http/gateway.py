"""etcd's HTTP/JSON gateway (``/v3/...``, ``/health``, ``/livez``, ``/readyz``, ``/version``;
``/metrics``, ``/v2/stats`` and the dashboard through :mod:`.ops`) over HTTP/1.1 with h11.

Theory of operation: etcd's grpc-gateway is a gRPC *client* of the member's own gRPC server; it
turns each JSON POST into a gRPC call and each reply back into JSON. We do the same in-process,
without a network hop: a :class:`Gateway` holds the grpclib ``Server`` that serves the gRPC side,
looks the method up in the server's handler mapping (the same ``__mapping__`` grpclib dispatches
HTTP/2 requests with) and runs the handler function with a
:class:`~.inprocess.GatewayStream`, a stand-in for ``grpclib.server.Stream`` that feeds it the
decoded request(s) and collects its replies. The server's codec and event dispatch
(``RecvRequest`` listeners, ...) are used exactly as for gRPC, so both transports run the same
validation, limits and errors (see :mod:`.inprocess`).

JSON <-> protobuf conversion is the generic mapping in :mod:`.jsonpb` (via the betterproto2
classes named in :data:`.routes.ROUTES`). Unary RPCs answer one JSON object; streaming RPCs
(watch, lease keep-alive) answer a chunked stream of ``{"result": {...}}`` lines, one per
message, for as long as the call runs: the request body ends in a gRPC half-close, after which a
lease keep-alive ends and a watch goes on (etcd's behaviour, which is what makes ``curl -N
.../v3/watch -d '{"create_request": ...}'`` useful) until the client disconnects or the server
ends it with an error, written as grpc-gateway's last ``{"error": {"grpc_code": ...}}`` chunk.
Unary errors use grpc-gateway v1's shape ``{"error": msg, "message": msg, "code": grpc_code}``;
both map the HTTP status from the gRPC code (:data:`.routes.HTTP_STATUS`).

The connection is one h11 state machine, so it outlives streamed responses: while a call
streams, :func:`_client_gone` listens for the client closing, and any bytes it reads instead (a
pipelined next request) go into h11's buffer for the next cycle. It is the only reader during the
stream, and it has ended before the next cycle reads again.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import betterproto2
import h11
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from multidict import MultiDict

from coord import __version__
from coord._pb import etcdserverpb as pb
from coord.server.grpclib_compat import server_codec, server_dispatch, server_mapping

from .callstream import TransportPeer
from .inprocess import GatewayStream, NoTransport
from .jsonpb import JsonMappingError, from_json, to_json
from .ops import OpsRoutes
from .probes import Probes
from .routes import HTTP_STATUS, ROUTES, Route, dumps, error_body

__all__ = ["Gateway"]

log = logging.getLogger(__name__)

#: Largest request body accepted (etcd's gRPC receive limit is 2 MiB of protobuf; JSON with
#: base64 is ~4/3 of that, plus syntax).
MAX_BODY = 4 * 1024 * 1024
_MAX_HEADERS = 64 * 1024
_HEALTH_TIMEOUT = 3.0


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class _HttpError(Exception):
    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


class Gateway:
    """Serves etcd's HTTP/1.1 JSON API for the gRPC handlers of one grpclib ``Server``."""

    def __init__(
        self,
        grpc_server: Server,
        *,
        max_body: int = MAX_BODY,
        health_timeout: float = _HEALTH_TIMEOUT,
        ops: OpsRoutes | None = None,
        api: bool = True,
    ) -> None:
        """``ops``: ``/metrics``, ``/v2/stats`` and the dashboard (:mod:`.ops`); without it,
        404. ``api=False`` serves only those and the health probes (``--listen-metrics-urls``)."""
        self._ops = ops
        self._api = api
        self._mapping: dict[str, Any] = server_mapping(grpc_server)
        self._codec = server_codec(grpc_server)
        self._dispatch = server_dispatch(grpc_server)
        self._max_body = max_body
        self._health_timeout = health_timeout
        self._probes = Probes(self.call, self._alarms, health_timeout)
        self._head_conns: set[int] = set()  # id() of connections serving a HEAD request

    # ----------------------------------------------------------------------------- connection

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve HTTP/1.1 requests on one connection until either side closes it."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADERS)
        try:
            while True:
                event = await self._next_event(conn, reader)
                if isinstance(event, h11.ConnectionClosed):
                    return
                if not isinstance(event, h11.Request):
                    return
                if event.method.upper() == b"HEAD":
                    self._head_conns.add(id(conn))
                else:
                    self._head_conns.discard(id(conn))
                try:
                    if conn.they_are_waiting_for_100_continue:  # curl does for bodies > 1 KiB
                        await self._send(
                            conn,
                            writer,
                            h11.InformationalResponse(
                                status_code=100, reason=b"Continue", headers=[]
                            ),
                        )
                    body = await self._read_body(conn, reader)
                except _HttpError as e:
                    await self._send_simple(
                        conn, writer, e.http_status, error_body(e.code, e.message), close=True
                    )
                    return
                await self._handle(conn, reader, writer, event, body)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError as e:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(Exception):
                    await self._send_simple(
                        conn, writer, e.error_status_hint, error_body(3, str(e)), close=True
                    )
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            log.debug("HTTP client %s went away: %r", writer.get_extra_info("peername"), e)
        finally:
            self._head_conns.discard(id(conn))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await reader.read(65536))

    async def _read_body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, reader)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body:
                    raise _HttpError(429, 8, "grpc: received message larger than max")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise _HttpError(400, 3, "unexpected EOF")

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, event: Any) -> None:
        data = conn.send(event)
        if data:
            writer.write(data)
            await writer.drain()

    async def _send_simple(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        close: bool = False,
    ) -> None:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if close:
            headers.append(("Connection", "close"))
        await self._send(
            conn, writer, h11.Response(status_code=status, headers=headers, reason=_reason(status))
        )
        if id(conn) not in self._head_conns:  # a HEAD response has no body
            await self._send(conn, writer, h11.Data(data=body))
        await self._send(conn, writer, h11.EndOfMessage())

    # -------------------------------------------------------------------------------- dispatch

    async def _handle(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
    ) -> None:
        method = request.method.decode("ascii", "replace").upper()
        target = request.target.decode("ascii", "replace")
        path, _, query = target.partition("?")
        if path.startswith("/v3beta/"):
            path = "/v3/" + path[len("/v3beta/") :]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        if path == "/health":
            if method not in ("GET", "HEAD"):
                await self._send_simple(
                    conn, writer, 405, b"Method Not Allowed\n", "text/plain; charset=utf-8"
                )
                return
            ok, reason = await self.health(serializable="serializable=true" in query)
            await self._send_simple(
                conn,
                writer,
                200 if ok else 503,
                dumps({"health": "true" if ok else "false", "reason": reason}),
            )
            return
        if self._probes.serves(path):
            status, text = await self._probes.answer(path, query, method)
            await self._send_simple(conn, writer, status, text, "text/plain; charset=utf-8")
            return
        if self._ops is not None and self._ops.serves(path):
            await self._send_simple(conn, writer, *await self._ops.answer(method, path))
            return
        if not self._api:
            await self._send_simple(conn, writer, 404, b"Not Found\n", "text/plain; charset=utf-8")
            return
        if path == "/version":
            await self._send_simple(conn, writer, 200, dumps(await self.version()))
            return
        route = ROUTES.get(path)
        if route is None:
            await self._send_simple(conn, writer, 404, b"Not Found\n", "text/plain; charset=utf-8")
            return
        if route.grpc_path not in self._mapping:  # an etcd RPC this server does not register
            await self._send_simple(conn, writer, 501, error_body(12, "Method not found"))
            return
        if method != "POST":
            await self._send_simple(
                conn, writer, 405, b"Method Not Allowed\n", "text/plain; charset=utf-8"
            )
            return
        try:
            requests = self._decode_body(route, body)
        except _HttpError as e:
            await self._send_simple(conn, writer, e.http_status, error_body(e.code, e.message))
            return
        metadata: MultiDict[str] = MultiDict()
        for key, value in headers.items():
            if key == "authorization":
                metadata.add("authorization", value)
            elif key.startswith("grpc-metadata-"):
                metadata.add(key[len("grpc-metadata-") :], value)
        peer = TransportPeer(writer.transport)
        if route.streaming:
            await self._stream(
                conn, reader, writer, route, requests, metadata, peer, headers.get("user-agent")
            )
        else:
            await self._unary(
                conn, writer, route, requests[0], metadata, peer, headers.get("user-agent")
            )

    def _decode_body(self, route: Route, body: bytes) -> list[bytes]:
        """Parse the JSON request(s) and re-encode them as protobuf."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _HttpError(400, 3, "invalid UTF-8 in request body") from None
        objs: list[Any] = []
        decoder = json.JSONDecoder()
        pos = 0
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                msg = "unexpected EOF" if e.pos >= len(text) else f"invalid JSON: {e.msg}"
                raise _HttpError(400, 3, msg) from None
            objs.append(obj)
            if not route.streaming:
                break
        if not route.streaming and pos < len(text) and text[pos:].strip():
            raise _HttpError(400, 3, "invalid JSON: extra data after the request object")
        if not objs and not route.streaming:
            objs.append({})
        try:
            return [bytes(from_json(route.request, o)) for o in objs]
        except JsonMappingError as e:
            raise _HttpError(400, 3, str(e)) from None

    def _new_stream(
        self,
        route: Route,
        metadata: MultiDict[str],
        peer: TransportPeer,
        user_agent: str | None,
        emit: Callable[[bytes], Awaitable[None]],
    ) -> GatewayStream:
        return GatewayStream(
            method_name=route.grpc_path,
            handler=self._mapping[route.grpc_path],
            codec=self._codec,
            dispatch=self._dispatch,
            metadata=metadata,
            peer=peer,
            user_agent=user_agent,
            emit=emit,
        )

    async def call(
        self, http_path: str, request: betterproto2.Message, metadata: MultiDict[str] | None = None
    ) -> betterproto2.Message:
        """Call a unary RPC in-process (used by /health and /version); raise ``GRPCError``."""
        route = ROUTES[http_path]
        if route.grpc_path not in self._mapping:
            raise GRPCError(Status.UNIMPLEMENTED, "Method not found")
        replies: list[bytes] = []

        async def emit(data: bytes) -> None:
            replies.append(data)

        stream = self._new_stream(
            route, metadata or MultiDict(), TransportPeer(NoTransport()), None, emit
        )
        stream.feed(bytes(request))
        stream.close_send()
        await stream.run()
        if stream.status is not Status.OK:
            raise GRPCError(stream.status, stream.status_message)
        return route.response.parse(replies[0])

    async def _unary(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        route: Route,
        request: bytes,
        metadata: MultiDict[str],
        peer: TransportPeer,
        user_agent: str | None,
    ) -> None:
        replies: list[bytes] = []

        async def emit(data: bytes) -> None:
            replies.append(data)

        stream = self._new_stream(route, metadata, peer, user_agent, emit)
        stream.feed(request)
        stream.close_send()
        await stream.run()
        if stream.status is not Status.OK:
            code = int(stream.status.value)
            await self._send_simple(
                conn,
                writer,
                HTTP_STATUS.get(code, 500),
                error_body(code, stream.status_message or ""),
            )
        else:
            body = json.dumps(
                to_json(route.response.parse(replies[0])), separators=(",", ":")
            ).encode()
            await self._send_simple(conn, writer, 200, body)

    async def _stream(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        route: Route,
        requests: list[bytes],
        metadata: MultiDict[str],
        peer: TransportPeer,
        user_agent: str | None,
    ) -> None:
        started = False

        async def start(status: int = 200) -> None:
            nonlocal started
            if not started:
                started = True
                await self._send(
                    conn,
                    writer,
                    h11.Response(
                        status_code=status,
                        reason=_reason(status),
                        headers=[("Content-Type", "application/json")],
                    ),
                )

        async def emit(data: bytes) -> None:
            await start()
            line = (
                json.dumps(
                    {"result": to_json(route.response.parse(data))}, separators=(",", ":")
                ).encode()
                + b"\n"
            )
            await self._send(conn, writer, h11.Data(data=line))

        stream = self._new_stream(route, metadata, peer, user_agent, emit)
        for r in requests:
            stream.feed(r)
        stream.close_send()
        task = asyncio.ensure_future(stream.run())
        listener = asyncio.ensure_future(_client_gone(conn, reader))
        gone = False
        try:
            await asyncio.wait({task, listener}, return_when=asyncio.FIRST_COMPLETED)
            gone = listener.done() and listener.result()
            if not gone:  # the call ended, or a pipelined request stopped the listener
                await task
        finally:
            listener.cancel()
            # Wait until the listener has really stopped: the next cycle reads the same reader.
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if gone:  # the client went away: the call is stopped, drop the connection
            log.debug(
                "HTTP client %s closed the connection during %s", peer.addr(), route.grpc_path
            )
            conn.send_failed()
            return
        task.result()
        if stream.status is not Status.OK:
            code = int(stream.status.value)
            http_status = HTTP_STATUS.get(code, 500)
            await start(http_status)  # grpc-gateway's stream error: a chunk, after any results
            await self._send(
                conn,
                writer,
                h11.Data(
                    data=dumps(
                        {
                            "error": {
                                "grpc_code": code,
                                "http_code": http_status,
                                "message": stream.status_message or "",
                                "http_status": _reason(http_status).decode(),
                            }
                        }
                    )
                ),
            )
        await start()
        await self._send(conn, writer, h11.EndOfMessage())

    # ------------------------------------------------------------------------- health/version

    async def health(self, serializable: bool = False) -> tuple[bool, str]:
        """etcd's /health verdict: a leader, no alarm, and a (linearizable) read that works."""
        try:
            async with asyncio.timeout(self._health_timeout):
                status = await self.call("/v3/maintenance/status", pb.StatusRequest())
                assert isinstance(status, pb.StatusResponse)
                if not status.leader:
                    return False, "RAFT NO LEADER"
                for alarm in await self._alarms():
                    if alarm.alarm != pb.AlarmType.NONE:
                        return False, f"ALARM {alarm.alarm.name}"
                await self.call(
                    "/v3/kv/range", pb.RangeRequest(key=b"health", serializable=serializable)
                )
        except TimeoutError:
            return False, "QGET ERROR: timed out"
        except GRPCError as e:
            return False, f"QGET ERROR: {e.message}"
        return True, ""

    async def _alarms(self) -> list[pb.AlarmMember]:
        try:
            resp = await self.call(
                "/v3/maintenance/alarm", pb.AlarmRequest(action=pb.AlarmRequestAlarmAction.GET)
            )
        except GRPCError as e:
            if e.status is Status.UNIMPLEMENTED:
                return []
            raise
        assert isinstance(resp, pb.AlarmResponse)
        return list(resp.alarms)

    async def version(self) -> dict[str, str]:
        """``{"etcdserver": ..., "etcdcluster": ..., "coord": ...}``: etcd's two fields from
        the member's Status (what etcd clients parse), plus coord's own version."""
        try:
            status = await self.call("/v3/maintenance/status", pb.StatusRequest())
            assert isinstance(status, pb.StatusResponse)
            server = status.version or "not_decided"
        except GRPCError:
            server = "not_decided"
        parts = server.split(".")
        cluster = f"{parts[0]}.{parts[1]}.0" if len(parts) >= 2 else "not_decided"
        return {"etcdserver": server, "etcdcluster": cluster, "coord": __version__}


async def _client_gone(conn: h11.Connection, reader: asyncio.StreamReader) -> bool:
    """Listen to the client while a response streams: True once it has closed the connection.

    Bytes that arrive meanwhile are a pipelined next request: they go into h11's receive
    buffer, so the next cycle parses them, and listening stops (False) with whatever follows
    left in the socket, as Go's net/http stops its background read after the first byte. The
    caller must await this coroutine's end before it reads ``reader`` again.
    """
    try:
        data = await reader.read(65536)
    except OSError:
        return True
    if not data:
        return True
    conn.receive_data(data)
    return False
