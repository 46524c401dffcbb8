"""Connections: endpoints, failover, retries, auth token and TLS.

Theory of operation. Two transports share one retry loop and one failover state
(:class:`_Caller`, :class:`_Route`):

* :class:`Connection` (asyncio) holds one grpclib ``Channel`` (one HTTP/2 connection) per
  endpoint, shared by every call and stream of an ``AsyncClient``;
* :class:`SyncConnection` (blocking, unary calls only) gives each calling thread a pooled
  :class:`coord._h2.Channel` of its own; the blocking ``Client`` uses it next to the former.

Calls and streams go to a *current* endpoint. A failure that says "this member is unusable"
(connection refused/reset, stream terminated, gRPC UNAVAILABLE) rotates the current endpoint
to the next one in the list.

Retry rule (etcd's clientv3 rule, clientv3/retry.go): an *idempotent* call (reads, status,
lease queries) is retried on the next endpoint after any such failure; a *mutating* call is
retried only when the request surely never reached a server (:class:`NotSent`: the connection
failed, or the server refused the stream or announced it would not process it). After an
ambiguous failure (the request may have been applied) a mutating call raises
:class:`~coord.errors.UnavailableError` / :class:`~coord.errors.ConnectionFailedError` and the
caller decides. Every call has one overall deadline (``timeout``), shared by its retries.

Stuck servers (:mod:`coord._liveness`, both transports): a connect must get the server's
HTTP/2 SETTINGS within ``connect_timeout`` before any request is written; an idle connection
is PINGed before use; a call whose server stays silent is given up after ``connect_timeout``.
Failures before a request was written are :class:`NotSent` (:class:`UnresponsiveNotSent`); an
endpoint found :class:`Unresponsive` is skipped for the rest of the call, so a call whose every
endpoint is stuck fails after about ``connect_timeout``. TLS failures at connect time are
:class:`TLSFailed`, explained by :func:`coord._tls.explain`, and end a call whose endpoints
all failed so as :class:`~coord.errors.TLSHandshakeError`.

Auth: with ``user``/``password`` the connection calls ``Auth/Authenticate`` before the first
request and sends the token as ``token`` metadata; a request rejected with "invalid auth
token" re-authenticates once and is re-sent (it was rejected, so that is safe for writes).

Messages cross the transports as bytes: :class:`_Codec` encodes betterproto2 messages with
``bytes(msg)`` (or passes pre-encoded bytes through) and decodes with the callable given as the
reply type (a fast decoder from :mod:`coord._kvcodec` or a betterproto2 ``parse``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import h2.exceptions
from grpclib.config import Configuration
from grpclib.const import Cardinality
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from . import _grpclib_compat as compat
from . import _h2, errors
from ._grpclib_compat import ClientChannel, H2Protocol
from ._h2 import NotSent, TLSFailed, Unresponsive, UnresponsiveNotSent
from ._liveness import Liveness, budget, only_ping_ack
from ._pb import etcdserverpb as pb
from ._tls import explain, make_ssl_context

__all__ = [
    "Connection",
    "Endpoint",
    "NotSent",
    "SyncConnection",
    "close_stream",
    "make_ssl_context",
    "parse_endpoints",
    "run_sync",
]

_log = logging.getLogger("coord.conn")

T = TypeVar("T")

#: Transport failures after which an endpoint is considered unusable.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    StreamTerminatedError,
    ProtocolError,
    h2.exceptions.ProtocolError,
    EOFError,
)


class _Codec(CodecBase):  # type: ignore[misc]
    """Pass-through protobuf codec: bytes in, a decoder callable's result out."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        if type(message) is bytes:
            return message
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return message_type(data)


_CODEC = _Codec()
_ANY: Any = None  # grpclib's request type slot (unused by our codec)


@dataclass(frozen=True)
class Endpoint:
    """One server address."""

    host: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoints(endpoints: str | list[str] | tuple[str, ...]) -> list[Endpoint]:
    """Parse ``"host:port"``, ``"http://host:port"``, ``"https://host:port"`` or a list of them.

    A comma-separated string is split. ``https://`` marks the endpoint as TLS.
    """
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out: list[Endpoint] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        tls = False
        if "://" in item:
            scheme, item = item.split("://", 1)
            tls = scheme == "https"
        item = item.rstrip("/")
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, "2379"
        out.append(Endpoint(host.strip("[]") or "127.0.0.1", int(port), tls))
    if not out:
        raise ValueError("no endpoint given")
    return out


#: How long a control-only write (PING ACK, WINDOW_UPDATE) may wait for company.
CONTROL_DELAY = 0.002
#: How long closing a client waits for its connections' sockets to close before aborting them.
CLOSE_WAIT = 1.0


def _control_only(data: bytes) -> bool:
    """True when ``data`` holds only HTTP/2 PING-ACK and WINDOW_UPDATE frames."""
    i, n = 0, len(data)
    while i + 9 <= n:
        ftype = data[i + 3]
        if not (ftype == 8 or (ftype == 6 and data[i + 4] & 1)):
            return False
        i += 9 + int.from_bytes(data[i : i + 3], "big")
    return i == n


class _CoalescingTransport:
    """Wraps an asyncio transport so the writes of one loop iteration leave as one send.

    grpclib writes a request's HEADERS and DATA separately, and grpc-go servers (etcd) send a
    BDP PING with every response whose ACK would be one more send. On a small host every
    ``send`` wakes the server and costs 0.1-0.4 ms of CPU, so requests are flushed once per
    loop iteration, and control-only writes (PING ACK, WINDOW_UPDATE) wait up to
    ``CONTROL_DELAY`` to ride along with the next request (see docs/performance.md).
    """

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buf: list[bytes] = []
        self._handle: asyncio.Handle | None = None  # pending flush
        self._urgent = False  # the pending flush is a call_soon (not the control delay)

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._buf.append(data)
        if self._urgent:
            return
        if _control_only(data):
            if self._handle is None:
                self._handle = self._loop.call_later(CONTROL_DELAY, self._flush)
            return
        if self._handle is not None:
            self._handle.cancel()
        self._urgent = True
        self._handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._urgent = False
        if self._buf:
            data = b"".join(self._buf) if len(self._buf) > 1 else self._buf[0]
            self._buf.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def connect(ch: ClientChannel) -> None:
    """Connect ``ch`` (if needed) and make its writes coalesce (see _CoalescingTransport)."""
    if compat.connected_protocol(ch) is not None:
        return
    proto = await compat.connect_channel(ch)
    transport = compat.protocol_transport(proto)
    if not isinstance(transport, _CoalescingTransport):
        compat.replace_transport(proto, _CoalescingTransport(transport, asyncio.get_running_loop()))


class _Protocol(H2Protocol):
    """grpclib's HTTP/2 client protocol, plus the liveness rule of :mod:`coord._liveness`.

    Every chunk received is reported to :attr:`live` and sets :attr:`heard`. While unary calls
    wait for their answers (:meth:`begin` / :meth:`end`), a timer applies the rule: it PINGs
    a silent server and closes the connection when the PING stays unanswered (:attr:`dead`
    then says why; the waiting calls see ``StreamTerminatedError``).
    """

    def __init__(
        self, handler: Any, config: Configuration, h2_config: Any, live: Liveness, authority: str
    ) -> None:
        super().__init__(handler, config, h2_config)
        self.live = live
        self.authority = authority
        self.heard = asyncio.Event()  # set by any received byte, cleared by our PINGs
        self.dead: str | None = None
        self.first = b""  # the first bytes received (to recognise a TLS server)
        self.lost: BaseException | None = None  # why the connection was lost, if it was
        self.gone = asyncio.Event()  # set when the connection is lost (its socket closed)
        self.transport: asyncio.Transport | None = None  # once the connection is made
        self._waiting = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.live.received(time.monotonic(), only_ping_ack(data))
        if not self.first:
            self.first = data[:5]
        self.heard.set()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc
        self.gone.set()
        self.heard.set()  # nothing more will come: wake whoever waits for an answer
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def alive(self) -> bool:
        """True while the connection is open."""
        return compat.protocol_open(self)

    def ping(self) -> None:
        """Send a PING now (an answer, any byte, sets :attr:`heard`)."""
        self.live.pinged(time.monotonic())
        self.heard.clear()
        compat.send_ping(self, b"coordka\x00")

    def begin(self) -> None:
        """A unary call waits for its answer from now on."""
        self._waiting += 1
        if self._timer is None:
            self._watch()

    def end(self) -> None:
        """That call has its answer (or gave up)."""
        self._waiting -= 1

    def _watch(self) -> None:
        self._timer = None
        if self._waiting <= 0 or not self.alive():
            return
        now = time.monotonic()
        action, at = self.live.check(now)
        if action == "ping":
            self.ping()
            action, at = self.live.check(now)
        if action == "dead":
            self.dead = self.live.silent_message(self.authority)
            compat.close_protocol(self, self.dead)
            return
        if at is not None:
            self._timer = asyncio.get_running_loop().call_later(max(at - now, 0.0), self._watch)


class _Channel(ClientChannel):
    """A grpclib ``Channel`` whose connections are :class:`_Protocol`\\ s."""

    def __init__(
        self, host: str, port: int, *, live: Callable[[], Liveness], **kwargs: Any
    ) -> None:
        authority = f"{host}:{port}"
        super().__init__(
            host,
            port,
            protocol_factory=lambda handler, config, h2_config: _Protocol(
                handler, config, h2_config, live(), authority
            ),
            **kwargs,
        )

    @property
    def protocol(self) -> _Protocol | None:
        """The open connection's protocol, if connected."""
        return cast(_Protocol | None, compat.connected_protocol(self))


def status_error(e: GRPCError) -> errors.CoordError:
    """Map a grpclib status error to coord's typed error."""
    return errors.from_status(int(e.status.value), e.message)


class _Route:
    """Failover state every connection of one client shares, whatever its loop or thread."""

    __slots__ = ("current", "token")

    def __init__(self) -> None:
        self.current = 0  # index of the endpoint new calls go to
        self.token: str | None = None  # auth token, once authenticated


class _Caller:
    """Endpoints, failover, auth and the retry rule, whatever carries the calls.

    The one retry loop (:meth:`unary`, see the module docstring) for both transports: a
    subclass says how one attempt on one endpoint runs (:meth:`_attempt`), how to pause between
    rounds (:meth:`_pause`) and how to drop an endpoint's connections (:meth:`_drop`).
    An attempt reports its outcome as: a value; a :class:`~coord.errors.CoordError` (the
    server's gRPC status); :class:`NotSent` (the request surely reached no server); a
    ``TimeoutError``; or another transport error (the request may have been processed).

    Invariant (checked by :meth:`_check`): ``0 <= current < len(endpoints)``.
    """

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        timeout: float | None,
        ssl: _ssl.SSLContext | None,
        user: str | None,
        password: str | None,
        keepalive: float | None = 10.0,
        route: _Route | None = None,
        connect_timeout: float | None = 2.0,
    ) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._route = route or _Route()
        self._ssl = ssl
        self._user = user
        self._password = password
        self._closed = False

    def _check(self) -> None:
        assert 0 <= self.current < len(self.endpoints)

    @property
    def current(self) -> int:
        """Index of the endpoint new calls and streams go to."""
        return self._route.current

    @current.setter
    def current(self, index: int) -> None:
        self._route.current = index

    @property
    def _token(self) -> str | None:
        return self._route.token

    @_token.setter
    def _token(self, token: str | None) -> None:
        self._route.token = token

    def _ssl_for(self, ep: Endpoint) -> _ssl.SSLContext | None:
        if self._ssl is None and ep.tls:
            return make_ssl_context(None, None, None)
        return self._ssl

    def rotate(self, failed: int, *, broken: bool = True) -> None:
        """Move ``current`` past endpoint ``failed``.

        ``broken``: the connection itself failed, so its connections are dropped too. A gRPC
        UNAVAILABLE status arrives on a working connection: then the connection (and the
        streams on it) is kept, only new calls go elsewhere.
        """
        if broken:
            self._drop(failed)
        if self.current == failed:
            self.current = (failed + 1) % len(self.endpoints)

    def _drop(self, index: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close every connection."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------- auth

    _auth_lock: Any

    async def metadata(self) -> dict[str, str] | None:
        """Per-call metadata (the auth token once authenticated)."""
        if self._user is None:
            return None
        if self._token is None:
            await self.authenticate()
        return {"token": self._token} if self._token else None

    @property
    def token(self) -> str | None:
        """The auth token in use (None before authentication or without auth)."""
        return self._token

    async def authenticate(self, stale: str | None = None) -> None:
        """Fetch a fresh token (unless another caller already replaced ``stale``)."""
        async with self._auth_lock:
            if self._token is not None and self._token != stale:
                return
            req = pb.AuthenticateRequest(name=self._user or "", password=self._password or "")
            resp = await self.unary(
                "/etcdserverpb.Auth/Authenticate",
                req,
                pb.AuthenticateResponse.parse,
                idempotent=True,
                auth=False,
            )
            self._token = resp.token

    # ------------------------------------------------------------------------------- calls

    def deadline(self, timeout: float | None = None) -> float | None:
        """Absolute monotonic deadline for a call with ``timeout`` (default: client timeout)."""
        t = self.timeout if timeout is None else timeout
        return None if t is None else time.monotonic() + t

    async def _attempt(
        self,
        index: int,
        path: str,
        request: Any,
        decode: Callable[[bytes], T],
        metadata: dict[str, str] | None,
        timeout: float | None,
    ) -> T:
        raise NotImplementedError

    async def _pause(self, seconds: float) -> None:
        raise NotImplementedError

    async def unary(
        self,
        path: str,
        request: Any,
        decode: Callable[[bytes], T],
        *,
        idempotent: bool,
        timeout: float | None = None,
        auth: bool = True,
    ) -> T:
        """Call a unary RPC with failover and retries (see the module docstring)."""
        deadline = self.deadline(timeout)
        attempts = max(3, 2 * len(self.endpoints))
        last: BaseException | None = None
        reauthed = False
        attempt = 0
        n = len(self.endpoints)
        stuck: set[int] = set()  # endpoints found unresponsive during this call
        while attempt < attempts and len(stuck) < n:
            if self._closed:
                raise errors.ConnectionFailedError("coord: client is closed")
            md = await self.metadata() if auth else None
            index = self.current
            while index in stuck:
                index = (index + 1) % n
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                return await self._attempt(index, path, request, decode, md, remaining)
            except errors.CoordError as err:
                if isinstance(err, errors.InvalidAuthTokenError) and auth and not reauthed:
                    reauthed = True
                    await self.authenticate(stale=self._token)
                    continue
                if not isinstance(err, errors.UnavailableError):
                    raise
                last = err
                self.rotate(index, broken=False)
                if not idempotent:
                    raise
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline - 1e-3:
                    break
                raise
            except NotSent as e:
                last = e
                self.rotate(index)
                if isinstance(e, Unresponsive):
                    stuck.add(index)
            except TRANSPORT_ERRORS as e:
                last = e
                self.rotate(index)
                if isinstance(e, Unresponsive):
                    stuck.add(index)
                if not idempotent:
                    raise errors.UnavailableError(
                        f"coord: connection to {self.endpoints[index]} lost during a write;"
                        f" its outcome is unknown ({e!r})"
                    ) from e
            attempt += 1
            if attempt % len(self.endpoints) == 0:
                await self._pause(min(0.05 * attempt, 0.5))
        if last is None or isinstance(last, TimeoutError | asyncio.TimeoutError):
            raise errors.RequestTimeoutError(f"coord: {path} timed out") from last
        if isinstance(last, TLSFailed):
            raise errors.TLSHandshakeError(f"coord: could not connect to {last}") from last
        if isinstance(last, errors.CoordError):
            raise last
        raise errors.ConnectionFailedError(
            f"coord: could not reach any endpoint of {[str(e) for e in self.endpoints]} ({last!r})"
        ) from last


class Connection(_Caller):
    """The asyncio transport: one grpclib ``Channel`` (HTTP/2 connection) per endpoint,
    shared by every call and stream of one client (see the module docstring).

    A connection belongs to one event loop (its channels do); :meth:`blocking` makes the
    blocking twin that shares the current endpoint and the auth token.

    Invariants (checked by :meth:`_check`): those of :class:`_Caller`; ``channels`` has at
    most one channel per endpoint index.
    """

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        timeout: float | None,
        ssl: _ssl.SSLContext | None,
        user: str | None,
        password: str | None,
        keepalive: float | None = 10.0,
        route: _Route | None = None,
        connect_timeout: float | None = 2.0,
    ) -> None:
        super().__init__(
            endpoints,
            timeout=timeout,
            ssl=ssl,
            user=user,
            password=password,
            keepalive=keepalive,
            route=route,
            connect_timeout=connect_timeout,
        )
        # HTTP/2 PINGs while calls or streams are open, so a silently dead peer (partition,
        # frozen host) is noticed within keepalive * 1.5 instead of never (watches would
        # hang). etcd refuses pings more often than every 5 s (too_many_pings).
        self._h2_config = compat.keepalive_config(keepalive) if keepalive else None
        self._channels: dict[int, _Channel] = {}
        self._auth_lock = asyncio.Lock()
        self._check()

    def _check(self) -> None:
        super()._check()
        assert all(0 <= i < len(self.endpoints) for i in self._channels)

    def blocking(self) -> SyncConnection:
        """The blocking twin (see :class:`SyncConnection`): same settings, own connections,
        shared current endpoint and auth token."""
        return SyncConnection(
            self.endpoints,
            timeout=self.timeout,
            ssl=self._ssl,
            user=self._user,
            password=self._password,
            keepalive=self._keepalive,
            route=self._route,
            connect_timeout=self.connect_timeout,
        )

    def channel(self, index: int | None = None) -> tuple[int, _Channel]:
        """``(index, channel)`` of the current endpoint (or of ``index``), created on demand."""
        i = self.current if index is None else index
        ch = self._channels.get(i)
        if ch is None:
            ep = self.endpoints[i]
            ch = _Channel(
                ep.host,
                ep.port,
                codec=_CODEC,
                ssl=self._ssl_for(ep),
                config=self._h2_config,
                live=lambda: Liveness(self.connect_timeout, self._keepalive),
            )
            self._channels[i] = ch
        return i, ch

    def _drop(self, index: int) -> None:
        ch = self._channels.pop(index, None)
        if ch is not None:
            ch.close()

    def close(self) -> None:
        """Close every channel (the sockets close soon after: see :meth:`aclose`)."""
        self._closed = True
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    async def aclose(self) -> None:
        """Close every channel and wait until their sockets are closed: a TLS connection
        first exchanges close_notify with the server, and a loop that ends before that would
        leave its socket open. One still open after :data:`CLOSE_WAIT` seconds is aborted."""
        protos = [p for ch in self._channels.values() if (p := ch.protocol) is not None]
        self.close()
        if not protos:
            return
        waits = [asyncio.ensure_future(p.gone.wait()) for p in protos]
        _, pending = await asyncio.wait(waits, timeout=CLOSE_WAIT)
        for w in pending:
            w.cancel()
        for p in protos:
            if not p.gone.is_set() and p.transport is not None:
                p.transport.abort()
        if pending:
            await asyncio.sleep(0)  # an abort closes the socket on the loop's next iteration

    async def _attempt(
        self,
        index: int,
        path: str,
        request: Any,
        decode: Callable[[bytes], T],
        metadata: dict[str, str] | None,
        timeout: float | None,
    ) -> T:
        _, ch = self.channel(index)
        proto = await self.ready(index, ch, timeout)
        proto.begin()
        try:
            stream: Any
            async with ch.request(
                path,
                Cardinality.UNARY_UNARY,
                _ANY,
                cast(Any, decode),
                timeout=timeout,
                metadata=metadata,
            ) as stream:
                await stream.send_message(request, end=True)
                reply = cast(T | None, await stream.recv_message())
        except GRPCError as e:
            raise status_error(e) from None
        except TRANSPORT_ERRORS as e:
            if proto.dead is not None:
                raise Unresponsive(proto.dead) from e
            raise
        finally:
            proto.end()
        if reply is None:
            raise StreamTerminatedError("empty reply")
        return reply

    async def ready(self, index: int, ch: _Channel, timeout: float | None) -> _Protocol:
        """Endpoint ``index``'s connection, ready for a request (:mod:`coord._liveness`):
        connected (TCP, TLS, the server's SETTINGS received) or, when it sat idle, PINGed and
        answered. Raises :class:`NotSent` (:class:`UnresponsiveNotSent` when the server
        stayed silent for ``connect_timeout``) or ``TimeoutError`` (the call's ``timeout``);
        a request was not written either way."""
        limit, own = budget(timeout, self.connect_timeout)
        ep = self.endpoints[index]
        proto = ch.protocol
        if proto is None:
            what = "send its HTTP/2 SETTINGS"
            try:
                async with asyncio.timeout(limit):
                    await connect(ch)
                    proto = cast(_Protocol, compat.channel_protocol(ch))
                    await proto.heard.wait()
            except TimeoutError:
                self._drop(index)
                if own:
                    raise UnresponsiveNotSent(
                        f"{ep} did not {what} within {self.connect_timeout!r} s (connect_timeout)"
                    ) from None
                raise
            except TRANSPORT_ERRORS as e:
                self._drop(index)
                tls = compat.channel_ssl(ch)
                cause = (
                    explain(e, tls, ep.host)
                    if compat.channel_protocol(ch) is not None or tls is not None
                    else None
                )
                if cause is not None:
                    raise TLSFailed(f"{ep}: {cause}") from e
                raise NotSent(f"could not connect to {ep}: {e!r}") from e
            if not proto.alive():
                self._drop(index)
                lost = proto.lost or ConnectionError("closed")
                cause = explain(
                    lost,
                    compat.channel_ssl(ch),
                    ep.host,
                    after_handshake=True,
                    first_bytes=proto.first,
                )
                if cause is not None:
                    raise TLSFailed(f"{ep}: {cause}") from lost
        elif proto.live.stale(time.monotonic()):
            what = "answer a PING on the idle connection"
            if proto.live.ping_sent is None:
                proto.ping()
            try:
                await asyncio.wait_for(proto.heard.wait(), limit)
            except TimeoutError:
                self._drop(index)
                if own:
                    raise UnresponsiveNotSent(
                        f"{ep} did not {what} within {self.connect_timeout!r} s (connect_timeout)"
                    ) from None
                raise
        if not proto.alive():
            self._drop(index)
            raise NotSent(f"{ep} closed the connection (not an HTTP/2 server?)")
        return proto

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def connection_alive(self, index: int) -> bool:
        """True while endpoint ``index`` has a channel whose HTTP/2 connection is up."""
        ch = self._channels.get(index)
        proto = None if ch is None else ch.protocol
        return proto is not None and proto.alive()

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        path: str,
        decode: Callable[[bytes], Any],
        extra_metadata: dict[str, str] | None = None,
    ) -> Any:
        """Open a bidi stream on the current endpoint; yields ``(index, stream)``.

        Raises the transport error (after rotating) when the endpoint cannot be reached. On
        exit the stream is closed locally (:func:`close_stream`). An error inside the stream
        rotates ``current`` to the next endpoint, but the channel (shared by every call and
        stream of the client) is dropped only when its connection really failed: one stream's
        own end or a local grpclib ``ProtocolError`` never closes it.
        """
        md = dict(await self.metadata() or {})
        md.update(extra_metadata or {})
        index, ch = self.channel()
        try:
            await self.ready(index, ch, None)
        except TRANSPORT_ERRORS:
            self.rotate(index)
            raise
        try:
            stream: Any
            async with ch.request(
                path, Cardinality.STREAM_STREAM, _ANY, cast(Any, decode), metadata=md
            ) as stream:
                await stream.send_request()
                try:
                    yield index, stream
                finally:
                    close_stream(stream)
        except ProtocolError:  # grpclib's: misuse of this one stream, the connection is fine
            raise
        except TRANSPORT_ERRORS:
            self.rotate(index, broken=not self.connection_alive(index))
            raise


class _ThreadLock:
    """A ``threading.Lock`` usable with ``async with`` by coroutines that never suspend."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    async def __aenter__(self) -> None:
        self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


class SyncConnection(_Caller):
    """The blocking transport: unary calls only, on pooled :class:`coord._h2.Channel`\\ s.

    Its coroutines never suspend (they block the calling thread instead), so they run to
    completion under :func:`run_sync` without an event loop; the retry loop is the one of
    :class:`_Caller`. Each calling thread takes an idle channel of the endpoint (or connects a
    new one) for the duration of an attempt, so concurrent threads each have their own
    connection and wait in ``recv`` in parallel. A channel that fails in any way is closed.

    Invariants (checked by :meth:`_check`): those of :class:`_Caller`; idle channels are
    filed under valid endpoint indexes; none is idle once the connection is closed.
    """

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        timeout: float | None,
        ssl: _ssl.SSLContext | None,
        user: str | None,
        password: str | None,
        keepalive: float | None = 10.0,
        route: _Route | None = None,
        connect_timeout: float | None = 2.0,
    ) -> None:
        super().__init__(
            endpoints,
            timeout=timeout,
            ssl=ssl,
            user=user,
            password=password,
            keepalive=keepalive,
            route=route,
            connect_timeout=connect_timeout,
        )
        self._idle: dict[int, list[_h2.Channel]] = {}
        self._pool_lock = threading.Lock()
        self._auth_lock = _ThreadLock()
        self._check()

    def _check(self) -> None:
        super()._check()
        assert all(0 <= i < len(self.endpoints) for i in self._idle)
        assert not (self._closed and any(self._idle.values()))

    def _take(self, index: int, timeout: float | None) -> _h2.Channel:
        while True:
            with self._pool_lock:
                idle = self._idle.get(index)
                ch = idle.pop() if idle else None
            if ch is None:
                break
            if ch.usable():
                return ch
            ch.close()  # closed or going away while idle: not this endpoint's failure
        ep = self.endpoints[index]
        try:
            return _h2.Channel(
                ep.host,
                ep.port,
                ssl=self._ssl_for(ep),
                timeout=timeout,
                keepalive=self._keepalive,
                connect_timeout=self.connect_timeout,
            )
        except NotSent:
            raise
        except OSError as e:
            if isinstance(e, TimeoutError) and timeout is not None:
                raise  # the call's deadline passed
            raise NotSent(f"could not connect to {ep}: {e!r}") from e

    def _give(self, index: int, ch: _h2.Channel) -> None:
        with self._pool_lock:
            if not self._closed:
                self._idle.setdefault(index, []).append(ch)
                return
        ch.close()

    def _drop(self, index: int) -> None:
        with self._pool_lock:
            idle = self._idle.pop(index, [])
        for ch in idle:
            ch.close()

    def close(self) -> None:
        """Close every idle channel; channels in use close when their call ends."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for chans in idle.values():
            for ch in chans:
                ch.close()

    async def _attempt(
        self,
        index: int,
        path: str,
        request: Any,
        decode: Callable[[bytes], T],
        metadata: dict[str, str] | None,
        timeout: float | None,
    ) -> T:
        ch = self._take(index, timeout)
        try:
            status, text, payload = ch.call(path, _CODEC.encode(request, None), metadata, timeout)
        except BaseException:
            ch.close()
            raise
        self._give(index, ch)
        if status:
            raise errors.from_status(status, text)
        return decode(payload)

    async def _pause(self, seconds: float) -> None:
        time.sleep(seconds)  # noqa: ASYNC251 (this coroutine blocks by design, see above)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a :class:`SyncConnection` call) to its end."""
    try:
        coro.send(None)
    except StopIteration as e:
        return cast(T, e.value)
    coro.close()
    raise RuntimeError("coord: a blocking call tried to suspend")


def close_stream(stream: Any) -> None:
    """End our side of a long-lived bidi stream now, without waiting for the server.

    Sends END_STREAM (a clean half-close: coord-server's handlers then finish OK) followed by
    RST_STREAM(NO_ERROR), and marks the grpclib stream cancelled, so that leaving its context
    neither waits for trailers a Watch/LeaseKeepAlive server never sends nor raises
    ``ProtocolError('Outgoing stream was not ended')`` when the HTTP/2 stream was already
    closed (reset by the peer) before we got here. Synchronous: it cannot block on flow
    control or be interrupted by cancellation.
    """
    h2s = compat.h2_stream(stream)
    try:
        if h2s.closable:
            if not compat.end_sent(stream):
                compat.send_end_nowait(stream)
            h2s.reset_nowait()
    except Exception as e:  # h2 state races: the stream is gone either way
        _log.debug("closing stream %s: %r", h2s.id, e)
    compat.mark_cancelled(stream)
