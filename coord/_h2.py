"""A blocking HTTP/2 connection for unary gRPC calls: the blocking ``Client``'s transport.

Theory of operation. grpclib runs HTTP/2 in pure Python on an event loop; a blocking caller
pays for that loop and for h2's generality (about 400 us of CPU per call on a 2-core host,
measured). A :class:`Channel` is one TCP (or TLS) connection speaking just the part of HTTP/2
that unary gRPC needs, driven by the calling thread itself, which waits in ``recv`` with the
GIL released. A channel carries **one call at a time** (its caller holds it exclusively; the
pool in :class:`coord._conn.SyncConnection` gives each concurrently calling thread its own), so
at most one stream is open and frames for any other stream are stale and dropped.

A call: [control frames owed to the peer] + HEADERS (+ CONTINUATION) + DATA frames, written
within the peer's flow-control windows and frame size; then frames are read until the stream
ends. Replies to the peer's SETTINGS and PINGs are owed, not sent at once: they ride along with
the next request (or go out before the next blocking read), saving the server a wake-up per
call (grpc-go sends a BDP PING with every response).

What the peer may do, and what a call then reports (``call`` returns ``(grpc_status, message,
payload)`` or raises):

* response headers, DATA (padded or not), trailers (HEADERS + CONTINUATION): the status;
* RST_STREAM(REFUSED_STREAM), or GOAWAY naming a last stream below ours: :class:`NotSent`
  (the server guarantees it did not process the request; a write may be retried);
* any other RST_STREAM, a closed or reset socket, a protocol violation: ``ConnectionError``
  (the request may or may not have been processed);
* silence: ``TimeoutError`` at the call's deadline; before that the rule of
  :mod:`coord._liveness` (PINGs after ``connect_timeout / 2`` of silence, then after
  ``keepalive``): :class:`Unresponsive` when a PING stays unanswered.

Connecting waits for the server's SETTINGS (within ``connect_timeout``) before any request is
written, and a connection idle for ``PROBE_IDLE`` is PINGed before the next request goes out:
a server silent then raises :class:`UnresponsiveNotSent` (the request was not written).

A failed or interrupted call leaves the channel in an unknown state: the caller closes it.
:meth:`Channel.usable` reads, without blocking, what arrived while the channel sat idle (a
GOAWAY, the server's close), so a request is never written to a connection already known dead:
that would make a write's outcome look ambiguous when it surely never reached a server.

Header blocks are encoded statically (literals without indexing), so no encoder state is kept;
responses are decoded with ``hpack`` (the server's dynamic table must be followed).
"""

from __future__ import annotations

import select
import socket
import ssl as _ssl
import struct
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import unquote

import hpack

from ._h2wire import (
    ACK,
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    MAX_FRAME,
    MAX_STREAM_ID,
    MAX_WINDOW,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
)
from ._h2wire import frame as _frame
from ._h2wire import literal as _literal
from ._liveness import Liveness, budget, only_ping_ack
from ._tls import explain

__all__ = ["Channel", "NotSent", "TLSFailed", "Unresponsive", "UnresponsiveNotSent"]

#: Our receive windows: the largest allowed, so a response never waits for a WINDOW_UPDATE;
#: the connection window is topped up once half of it has been used.
RECV_WINDOW = MAX_WINDOW

#: HTTP status to gRPC status, for replies that are not gRPC (gRPC's http-grpc-status map).
_HTTP_TO_GRPC = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}


class NotSent(ConnectionError):
    """The request surely never reached a server's handler: retrying it is safe, even a write."""


class TLSFailed(NotSent):
    """Connecting failed for a TLS reason (or a TLS/plain-text mix-up); ``str()`` names the
    endpoint and the likely cause (:func:`coord._tls.explain`). Nothing was sent."""


class Unresponsive(ConnectionError):
    """The server stayed silent past ``connect_timeout`` (see :mod:`coord._liveness`): its
    endpoint is not tried again during the call. The request may have been processed."""


class UnresponsiveNotSent(Unresponsive, NotSent):
    """The server stayed silent past ``connect_timeout`` before the request was written."""


def _grpc_timeout(seconds: float) -> str:
    ms = max(1, int(seconds * 1000) + 1)
    return f"{ms}m" if ms < 10**8 else f"{min(int(seconds) + 1, 10**8 - 1)}S"


_SETTINGS = _frame(
    SETTINGS, 0, 0, struct.pack(">HIHI", 0x2, 0, 0x4, RECV_WINDOW)
)  # ENABLE_PUSH=0, INITIAL_WINDOW_SIZE
_PREFACE = PREFACE + _SETTINGS + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", RECV_WINDOW - 65535))
_SETTINGS_ACK = _frame(SETTINGS, ACK, 0)


class Channel:
    """One blocking HTTP/2 connection for unary gRPC calls, one call at a time.

    Invariants (checked by :meth:`_check`): the peer's windows and frame size are within
    HTTP/2's bounds; stream IDs are odd and increase; a finished call leaves no stream open.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: _ssl.SSLContext | None = None,
        timeout: float | None = None,
        keepalive: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        """Connect: TCP, TLS and the server's SETTINGS within ``connect_timeout`` (and within
        the call's ``timeout``). Raises :class:`UnresponsiveNotSent` when the server stays
        silent, ``TimeoutError`` when the call's ``timeout`` ran out first, another
        ``OSError`` (``ssl.SSLError`` included) when connecting fails."""
        limit, own = budget(timeout, connect_timeout)
        deadline = None if limit is None else time.monotonic() + limit
        self._authority = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=limit)
        except TimeoutError:
            raise self._silent("accept the TCP connection", own, connect_timeout) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl is not None:
                if deadline is not None:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    sock = ssl.wrap_socket(sock, server_hostname=host)
                except TimeoutError:
                    raise self._silent("complete the TLS handshake", own, connect_timeout) from None
                except OSError as e:
                    cause = explain(e, ssl, host)
                    if cause is None:
                        raise
                    raise TLSFailed(f"{self._authority}: {cause}") from e
                if sock.selected_alpn_protocol() != "h2":
                    raise ConnectionError(f"{host}:{port} did not agree to HTTP/2 over TLS")
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._tls = isinstance(sock, _ssl.SSLSocket)
        self._live = Liveness(connect_timeout, keepalive)
        self._blocks: dict[str, bytes] = {}  # path -> its constant header block part
        self._decoder = hpack.Decoder()
        self._out: list[bytes] = [_PREFACE]  # owed frames: the preface goes out at once
        self._buf = bytearray()
        self._next_id = 1
        self._send_window = 65535  # connection-level, toward the peer
        self._initial_window = 65535  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self._max_frame = 16384  # the peer's SETTINGS_MAX_FRAME_SIZE
        self._recv_used = 0  # bytes received since our last connection WINDOW_UPDATE
        self._goaway: int | None = None  # last stream ID the peer will process
        self._closed = False
        self._settings_seen = False  # the server's first SETTINGS arrived
        # the one stream's state (reset by _start_stream)
        self._sid = 0
        self._stream_window = 0
        self._headers: dict[str, str] | None = None
        self._trailers: dict[str, str] | None = None
        self._body: list[bytes] = []
        self._ended = False
        self._rst: int | None = None
        self._sent = True  # the current request was written completely
        self._deadline: float | None = None
        self._block: bytearray | None = None  # a header block awaiting CONTINUATION
        self._block_sid = 0
        self._block_end = False
        try:
            self._await(
                lambda: self._settings_seen,
                deadline,
                own,
                connect_timeout,
                "send its HTTP/2 SETTINGS",
            )
        except BaseException as e:
            sock.close()
            cause = (
                None
                if isinstance(e, TimeoutError | NotSent) or not isinstance(e, OSError)
                else explain(e, ssl, host, after_handshake=True, first_bytes=bytes(self._buf[:5]))
            )
            if cause is None:
                raise
            raise TLSFailed(f"{self._authority}: {cause}") from e

    def _check(self) -> None:
        assert self._send_window <= MAX_WINDOW
        assert self._initial_window <= MAX_WINDOW
        assert 16384 <= self._max_frame < 2**24
        assert self._next_id % 2 == 1
        assert self._sid < self._next_id
        assert 0 <= self._recv_used <= RECV_WINDOW

    # --------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the socket (no GOAWAY: the server treats a close like one)."""
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass

    def usable(self) -> bool:
        """Take in what arrived while idle, without blocking; False if the channel is dead,
        going away, or out of stream IDs (the caller then closes it)."""
        if self._closed:
            return False
        try:
            sock = self._sock
            while (isinstance(sock, _ssl.SSLSocket) and sock.pending()) or select.select(
                [self._sock], [], [], 0
            )[0]:
                self._sock.settimeout(0)
                try:
                    chunk = self._sock.recv(1 << 18)
                except (BlockingIOError, _ssl.SSLWantReadError):
                    break
                if not chunk:
                    return False
                self._live.received(time.monotonic(), only_ping_ack(chunk))
                self._buf += chunk
                self._process_buffered()
        except (OSError, ValueError):
            return False
        return self._goaway is None and self._next_id < MAX_STREAM_ID

    # -------------------------------------------------------------------------------- calls

    def call(
        self, path: str, message: bytes, metadata: dict[str, str] | None, timeout: float | None
    ) -> tuple[int, str, bytes]:
        """Send one unary request; return ``(grpc_status, grpc_message, payload)``.

        Raises :class:`NotSent`, ``ConnectionError``/``OSError`` or ``TimeoutError`` as the
        module docstring says; after any exception the caller must :meth:`close` the channel.
        """
        if self._live.stale(time.monotonic()):
            self._probe(timeout)
            if self._goaway is not None:
                raise NotSent(f"{self._authority} is going away")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._deadline = deadline
        self._start_stream(path, metadata, timeout)
        whole = self._send_data(b"\x00" + struct.pack(">I", len(message)) + message, deadline)
        if not whole and self._rst is None:
            # answered before the request was whole: the rest will not be sent (CANCEL)
            self._out.append(_frame(RST_STREAM, 0, self._sid, struct.pack(">I", CANCEL)))
        self._flush()
        self._sent = True
        while not self._ended:
            self._receive(deadline)
        return self._outcome()

    def _start_stream(
        self, path: str, metadata: dict[str, str] | None, timeout: float | None
    ) -> None:
        if self._goaway is not None or self._next_id >= MAX_STREAM_ID:
            raise NotSent("connection is going away")
        sid, self._next_id = self._next_id, self._next_id + 2
        self._sid, self._stream_window = sid, self._initial_window
        self._headers = self._trailers = None
        self._body = []
        self._ended = False
        self._rst = None
        self._sent = False
        block = self._blocks.get(path)
        if block is None:
            block = self._blocks[path] = b"".join(
                _literal(n, v)
                for n, v in (
                    (":method", "POST"),
                    (":scheme", "https" if self._tls else "http"),
                    (":path", path),
                    (":authority", self._authority),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                    ("user-agent", "coord-python"),
                )
            )
        if timeout is not None:
            block += _literal("grpc-timeout", _grpc_timeout(timeout))
        if metadata:
            block += b"".join(_literal(n, v) for n, v in metadata.items())
        step = self._max_frame
        if len(block) <= step:
            self._out.append(_frame(HEADERS, END_HEADERS, sid, block))
            return
        self._out.append(_frame(HEADERS, 0, sid, block[:step]))
        for i in range(step, len(block), step):
            last = i + step >= len(block)
            self._out.append(
                _frame(CONTINUATION, END_HEADERS if last else 0, sid, block[i : i + step])
            )

    def _send_data(self, data: bytes, deadline: float | None) -> bool:
        """Queue ``data`` as DATA frames (the last with END_STREAM) within the peer's windows,
        writing and reading (for WINDOW_UPDATEs) while they are exhausted. False if the
        stream ended (the server answered) before all of it could be queued."""
        view, pos, sid = memoryview(data), 0, self._sid
        while True:
            n = min(len(data) - pos, self._max_frame, self._send_window, self._stream_window)
            last = pos + n == len(data)
            if n > 0 or last:
                self._out.append(
                    _frame(DATA, END_STREAM if last else 0, sid, bytes(view[pos : pos + n]))
                )
                pos += n
                self._send_window -= n
                self._stream_window -= n
                if last:
                    return True
                continue
            self._flush()  # out of window: let the peer read, wait for its WINDOW_UPDATE
            self._receive(deadline)
            if self._ended:  # the server answered before reading the whole request
                return False

    def _flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            deadline = self._deadline
            self._sock.settimeout(
                None if deadline is None else max(deadline - time.monotonic(), 0.001)
            )
            try:
                self._sock.sendall(data)
            except OSError as e:
                if self._sent:
                    raise ConnectionError(f"writing to {self._authority} failed: {e!r}") from e
                # The request's last byte comes last, and it was not written: the server
                # cannot have the whole request.
                raise NotSent(f"writing to {self._authority} failed: {e!r}") from e

    def _receive(self, deadline: float | None) -> None:
        """Read at least one chunk (blocking, GIL released) and process its frames; PING a
        silent server and give up on one that stays silent (:class:`coord._liveness`)."""
        if self._out:  # owed replies go out before we block (long calls, large responses)
            self._flush()
        live = self._live
        while True:
            now = time.monotonic()
            action, at = live.check(now)
            if action == "dead":
                raise Unresponsive(live.silent_message(self._authority))
            if action == "ping":
                live.pinged(now)
                self._out.append(_frame(PING, 0, 0, b"coordka\x00"))
                self._flush()
                continue
            until = at if deadline is None else deadline if at is None else min(at, deadline)
            if self._recv_until(until):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"call to {self._authority} timed out")

    def _recv_until(self, until: float | None) -> bool:
        """Read one chunk, waiting until ``until`` at most; False if none came by then."""
        wait = None if until is None else until - time.monotonic()
        if wait is not None and wait <= 0:
            return False
        self._sock.settimeout(None if wait is None else max(wait, 0.001))
        try:
            chunk = self._sock.recv(1 << 18)
        except TimeoutError:
            return False
        if not chunk:
            raise ConnectionError(f"{self._authority} closed the connection")
        self._live.received(time.monotonic(), only_ping_ack(chunk))
        self._buf += chunk
        self._process_buffered()
        return True

    def _await(
        self,
        done: Callable[[], bool],
        deadline: float | None,
        own: bool,
        connect_timeout: float | None,
        what: str,
    ) -> None:
        """Before a request is written: flush what is owed and read until ``done()``; raise
        :class:`UnresponsiveNotSent` (``own``: the connect timeout was the limit) or
        ``TimeoutError`` (the call's deadline) if it does not happen by ``deadline``."""
        self._deadline = deadline
        try:
            self._flush()
        except NotSent:
            raise
        except OSError as e:
            raise NotSent(f"writing to {self._authority} failed: {e!r}") from e
        while not done():
            if not self._recv_until(deadline):
                raise self._silent(what, own, connect_timeout)

    def _silent(self, what: str, own: bool, connect_timeout: float | None) -> OSError:
        if own:
            return UnresponsiveNotSent(
                f"{self._authority} did not {what} within {connect_timeout!r} s (connect_timeout)"
            )
        return TimeoutError(f"call to {self._authority} timed out")

    def _probe(self, timeout: float | None) -> None:
        """PING a connection that sat idle, and wait for any answer, before writing on it."""
        limit, own = budget(timeout, self._live.timeout)
        deadline = None if limit is None else time.monotonic() + limit
        now = time.monotonic()
        self._live.pinged(now)
        self._out.append(_frame(PING, 0, 0, b"coordpr\x00"))
        self._await(
            lambda: self._live.ping_sent is None,
            deadline,
            own,
            self._live.timeout,
            "answer a PING on the idle connection",
        )

    def _outcome(self) -> tuple[int, str, bytes]:
        if self._rst is not None:
            if self._rst == REFUSED_STREAM:
                raise NotSent(f"{self._authority} refused the stream")
            raise ConnectionError(f"{self._authority} reset the stream (code {self._rst})")
        headers = self._headers or {}
        status = headers.get(":status")
        if status != "200":
            code = _HTTP_TO_GRPC.get(int(status or 0), 2)
            return code, f"HTTP status {status} from {self._authority}", b""
        fields = headers if self._trailers is None else self._trailers
        grpc_status = fields.get("grpc-status")
        if grpc_status is None:
            return 13, "response without grpc-status", b""
        message = unquote(fields.get("grpc-message", ""))
        code = int(grpc_status)
        if code:
            return code, message, b""
        body = b"".join(self._body)
        if len(body) < 5 or body[0] or int.from_bytes(body[1:5], "big") != len(body) - 5:
            return 13, "malformed or compressed response message", b""
        return 0, message, body[5:]

    # ------------------------------------------------------------------------------ frames

    def _process_buffered(self) -> None:
        """Handle every complete frame in the buffer."""
        buf, pos = self._buf, 0
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            if length > MAX_FRAME:
                if buf.startswith(b"HTTP/1"):
                    raise ConnectionError(
                        f"{self._authority} answered in HTTP/1: it is not a"
                        " gRPC server (wrong port?)"
                    )
                raise ConnectionError(f"{self._authority} sent a {length}-byte frame")
            end = pos + 9 + length
            if end > len(buf):
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            self._on_frame(ftype, flags, sid, bytes(buf[pos + 9 : end]))
            pos = end
        del buf[:pos]

    def _on_frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self._block is not None and ftype != CONTINUATION:
            raise ConnectionError("header block interrupted by another frame")
        if ftype == DATA:
            self._recv_used += len(payload)
            if self._recv_used >= RECV_WINDOW // 2:
                self._out.append(_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._recv_used)))
                self._recv_used = 0
            if sid == self._sid and not self._ended:
                self._body.append(_unpad(payload, flags))
                self._ended = bool(flags & END_STREAM)
        elif ftype == HEADERS:
            if flags & PADDED:
                payload = _unpad(payload, flags)
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self._block, self._block_sid = bytearray(payload), sid
            self._block_end = bool(flags & END_STREAM)
            if flags & END_HEADERS:
                self._end_block()
        elif ftype == CONTINUATION:
            if self._block is None or sid != self._block_sid:
                raise ConnectionError("unexpected CONTINUATION frame")
            self._block += payload
            if flags & END_HEADERS:
                self._end_block()
        elif ftype == SETTINGS:
            if not flags & ACK:
                self._settings_seen = True
                self._apply_settings(payload)
                self._out.append(_SETTINGS_ACK)
        elif ftype == PING:
            if not flags & ACK:
                self._out.append(_frame(PING, ACK, 0, payload))
        elif ftype == WINDOW_UPDATE:
            inc = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if sid == 0:
                self._send_window += inc
            elif sid == self._sid:
                self._stream_window += inc
        elif ftype == RST_STREAM:
            if sid == self._sid and not self._ended:
                self._rst = int.from_bytes(payload[:4], "big")
                self._ended = True
        elif ftype == GOAWAY:
            self._goaway = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if self._sid > self._goaway and not self._ended:
                raise NotSent(f"{self._authority} is going away (GOAWAY before our stream)")
        elif ftype == PUSH_PROMISE:
            raise ConnectionError("server push was disabled")
        # PRIORITY and unknown frame types are ignored, as HTTP/2 requires

    def _end_block(self) -> None:
        assert self._block is not None
        # decode always, even for a stale stream: it keeps the decoder's table in step
        try:
            fields = cast(dict[str, str], dict(self._decoder.decode(bytes(self._block))))
        except hpack.HPACKError as e:
            raise ConnectionError(f"bad header block from {self._authority}: {e}") from e
        sid, self._block = self._block_sid, None
        if sid != self._sid or self._ended:
            return
        if self._headers is None:
            self._headers = fields
        else:
            self._trailers = fields
        if self._block_end:
            self._ended = True

    def _apply_settings(self, payload: bytes) -> None:
        for i in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == 0x4:  # INITIAL_WINDOW_SIZE: applies to open streams as a delta
                if value > MAX_WINDOW:
                    raise ConnectionError("peer's initial window is too large")
                self._stream_window += value - self._initial_window
                self._initial_window = value
            elif key == 0x5:  # MAX_FRAME_SIZE
                if not 16384 <= value < 2**24:
                    raise ConnectionError("peer's max frame size is out of range")
                self._max_frame = value


def _unpad(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    pad = payload[0]
    if pad >= len(payload):
        raise ConnectionError("padding longer than the frame")
    return payload[1 : len(payload) - pad]
