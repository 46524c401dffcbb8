"""The server's HTTP/2 for gRPC: a lean connection that feeds grpclib's handlers directly.

Theory of operation. grpclib serves HTTP/2 through the h2 library, whose general frame
machinery cost about 93 µs of a 270 µs Put on a 2-core host (docs/performance.md, "Issue
17"), and no maintained package serves HTTP/2 faster from pure Python; so this is
hand-written. One :class:`GrpcConnection` (an ``asyncio.Protocol``) per client connection
speaks the server side of RFC 9113 that gRPC uses and runs each request with grpclib's method
table, codec and event dispatch (:mod:`.grpcserver`) through an :class:`~.h2stream.H2Stream`.
grpclib stays the framework the services are written in; only its transport is replaced.

A connection is a state machine driven by its bytes: the client preface, then frames parsed
in order by :meth:`GrpcConnection.data_received` and checked by :mod:`.h2frames`. SETTINGS
and PING are acked; HEADERS (+ CONTINUATION) open a stream and start its handler task; DATA
feeds the stream; RST_STREAM cancels its task; WINDOW_UPDATE and SETTINGS move the send
windows and release held-back replies; the client's GOAWAY lets the open streams finish, then
closes. Output is queued and written once per event-loop turn (``call_soon``), so the replies,
window updates and acks of all the requests a turn handled share one ``write``.

Errors, as RFC 9113 section 5.4 divides them: a connection error (a bad preface, a frame too
large, an even, reused or idle stream ID, an undecodable header block, a CONTINUATION out of
place, a bad SETTINGS value, a window overflow, ...) sends GOAWAY with the RFC's code and
closes, cancelling the handlers; a stream error resets that stream with RST_STREAM. Requests
that are HTTP/2 but not gRPC get grpclib's answers (405, 415, 400; ``UNIMPLEMENTED`` for an
unknown method). Frames the client sent after we reset a stream are ignored.

Flow control. The connection's receive window (:data:`CONN_WINDOW`) is topped up once half
of it is used, whatever the streams do with their bytes; each stream's own window is given
back as its handler reads (:mod:`.h2stream`), so a stream nobody reads stops its client, not
the connection. A reply is cut into DATA frames within the client's frame size and both send
windows; what does not fit waits on its stream, in order, and its writer with it.

Header blocks are decoded with ``hpack`` (:mod:`.hpackcache`: a repeated block once) and
encoded as literals without indexing, so no encoder state is kept; after the client changes
SETTINGS_HEADER_TABLE_SIZE the next block starts with a table size update to 0.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, Any

import hpack
from grpclib.const import Status
from grpclib.metadata import Deadline, decode_metadata, encode_grpc_message

from coord._h2wire import (
    ACK,
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    MAX_FRAME,
    MAX_WINDOW,
    NO_ERROR,
    PING,
    PREFACE,
    PRIORITY,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    STREAM_CLOSED,
    WINDOW_UPDATE,
    frame,
    literal,
)

from .callstream import TransportPeer
from .h2frames import (
    HEADER_TABLE_SIZE,
    INITIAL_WINDOW_SIZE,
    MAX_FRAME_SIZE,
    H2ConnectionError,
    H2StreamError,
    control_frame,
    header_fragment,
    settings,
    unpad,
    window_increment,
)
from .h2stream import STREAM_WINDOW, H2Stream
from .hpackcache import CachingDecoder

if TYPE_CHECKING:
    from .grpcserver import GrpcServer

__all__ = ["CONN_WINDOW", "GrpcConnection"]

log = logging.getLogger(__name__)

#: The connection's receive window.
CONN_WINDOW = 16 * 1024 * 1024
#: How many of the streams we reset are remembered (their late HEADERS are then ignored).
RESETS_KEPT = 128
#: The largest header block accepted (hpack's limit on the decoded list is 64 KiB).
MAX_HEADER_BLOCK = 256 * 1024
_SETTINGS = frame(SETTINGS, 0, 0, struct.pack(">HIHI", 0x2, 0, 0x4, STREAM_WINDOW))
_GREETING = _SETTINGS + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", CONN_WINDOW - 65535))
_SETTINGS_ACK = frame(SETTINGS, ACK, 0)
_OK_TRAILERS = literal("grpc-status", "0")
_DATA_HEAD = struct.Struct(">IBI")  # (length << 8 | type), flags, stream ID: a frame header


class GrpcConnection(asyncio.Protocol):
    """The server end of one HTTP/2 connection (see the module docstring).

    Invariants (checked by :meth:`_check`): the windows stay within HTTP/2's bounds; every
    open stream's ID is odd and at most the last one opened; a finished or reset stream is no
    longer open.
    """

    def __init__(self, server: GrpcServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._peer: TransportPeer | None = None
        self._buf = bytearray()
        self._preface = False
        self._settings_seen = False
        self._decoder = CachingDecoder()
        self._table_update = False  # the next header block starts with a size update
        self._streams: dict[int, H2Stream] = {}
        self._reset_sids: dict[int, None] = {}  # the last streams we reset, oldest first
        self._blocked: dict[int, H2Stream] = {}  # streams with reply bytes pending
        self.last_sid = 0
        self.peer_initial_window = 65535
        self._max_frame = 16384  # the client's SETTINGS_MAX_FRAME_SIZE
        self._send_window = 65535
        self._recv_window = CONN_WINDOW
        self._block: bytearray | None = None  # a header block awaiting CONTINUATION
        self._block_sid = 0
        self._block_end = False
        self._out: list[bytes | memoryview] = []
        self._flushing = False
        self.paused = False
        self._closing = False  # GOAWAY sent or the connection lost: no new streams
        self._peer_gone = False  # the client sent GOAWAY

    def _check(self) -> None:
        assert self._send_window <= MAX_WINDOW
        assert self._recv_window <= CONN_WINDOW
        assert 16384 <= self._max_frame < 2**24
        for sid, stream in self._streams.items():
            assert sid % 2 == 1
            assert sid <= self.last_sid
            assert stream.sid == sid
            assert stream.send_window <= MAX_WINDOW
            assert not stream.done  # a finished or reset stream is forgotten at once
        assert all(self._streams.get(sid) is s and s.pending for sid, s in self._blocked.items())
        assert not self._reset_sids.keys() & self._streams.keys()

    # ------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._peer = TransportPeer(transport)
        self._server.connections.add(self)
        self.queue(_GREETING)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._server.connections.discard(self)
        self._out.clear()
        for stream in list(self._streams.values()):
            self._drop(stream)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        for stream in list(self._streams.values()):
            if not stream.pending:
                stream.release()

    def eof_received(self) -> bool | None:
        return None  # the client closed its side: close ours (connection_lost follows)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        try:
            if not self._preface:
                n = min(len(buf), len(PREFACE))
                if buf[:n] != PREFACE[:n]:
                    raise H2ConnectionError(PROTOCOL_ERROR, "invalid HTTP/2 client preface")
                if n < len(PREFACE):
                    return
                del buf[: len(PREFACE)]
                self._preface = True
            pos, size = 0, len(buf)
            while size - pos >= 9 and not self._closing:
                length = int.from_bytes(buf[pos : pos + 3], "big")
                if length > MAX_FRAME:
                    raise H2ConnectionError(FRAME_SIZE_ERROR, f"frame of {length} bytes")
                end = pos + 9 + length
                if end > size:
                    break
                ftype, flags = buf[pos + 3], buf[pos + 4]
                sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
                payload = bytes(buf[pos + 9 : end])
                pos = end
                try:
                    self._frame(ftype, flags, sid, payload)
                except H2StreamError as e:
                    self._reset(e.sid, e.code)
            del buf[:pos]
        except H2ConnectionError as e:
            self._fail(e.code, str(e))

    # ----------------------------------------------------------------------- frames in

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if not self._settings_seen and ftype != SETTINGS:
            raise H2ConnectionError(PROTOCOL_ERROR, "the first frame is not SETTINGS")
        if self._block is not None and ftype != CONTINUATION:
            raise H2ConnectionError(PROTOCOL_ERROR, "header block interrupted")
        if ftype == DATA:
            self._data(flags, sid, payload)
        elif ftype == HEADERS:
            self._block = bytearray(header_fragment(sid, payload, flags))
            self._block_sid, self._block_end = sid, bool(flags & END_STREAM)
            if flags & END_HEADERS:
                self._end_block()
        elif ftype == CONTINUATION:
            if self._block is None or sid != self._block_sid:
                raise H2ConnectionError(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            self._block += payload
            if len(self._block) > MAX_HEADER_BLOCK:
                raise H2ConnectionError(PROTOCOL_ERROR, "header block too large")
            if flags & END_HEADERS:
                self._end_block()
        elif ftype == WINDOW_UPDATE:
            self._window_update(sid, window_increment(payload))
        elif ftype == SETTINGS:
            if flags & ACK:
                if payload:
                    raise H2ConnectionError(FRAME_SIZE_ERROR, "SETTINGS ack with a payload")
            else:
                self._settings(settings(sid, payload))
        elif ftype in (PING, RST_STREAM, GOAWAY, PRIORITY):
            control_frame(ftype, sid, payload)
            if ftype == PING:
                if not flags & ACK:
                    self.queue(frame(PING, ACK, 0, payload))
            elif ftype == RST_STREAM:
                if sid > self.last_sid:
                    raise H2ConnectionError(PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
                stream = self._streams.get(sid)
                if stream is not None:
                    self._drop(stream)
            elif ftype == GOAWAY:
                self._peer_gone = True
                if not self._streams:
                    self._close()
        elif ftype == PUSH_PROMISE:
            raise H2ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # unknown frame types are ignored, as RFC 9113 section 4.1 requires

    def _data(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise H2ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        if sid > self.last_sid:
            raise H2ConnectionError(PROTOCOL_ERROR, f"DATA on idle stream {sid}")
        size = len(payload)
        if size > self._recv_window:
            raise H2ConnectionError(FLOW_CONTROL_ERROR, "DATA past the connection window")
        self._recv_window -= size
        if self._recv_window <= CONN_WINDOW // 2:
            used, self._recv_window = CONN_WINDOW - self._recv_window, CONN_WINDOW
            self.queue(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", used)))
        stream = self._streams.get(sid)
        if stream is None or stream.done:
            return  # a stream already closed: its late bytes only count for the connection
        if stream.recv_ended:
            raise H2StreamError(sid, STREAM_CLOSED)
        if size > stream.recv_window:
            raise H2StreamError(sid, FLOW_CONTROL_ERROR)
        stream.recv_window -= size
        stream.received(unpad(payload, flags), bool(flags & END_STREAM))

    def _window_update(self, sid: int, inc: int) -> None:
        if sid == 0:
            if inc == 0:
                raise H2ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += inc
            if self._send_window > MAX_WINDOW:
                raise H2ConnectionError(FLOW_CONTROL_ERROR, "connection window overflow")
            self._unblock()
            return
        if sid > self.last_sid:
            raise H2ConnectionError(PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
        stream = self._streams.get(sid)
        if stream is None:
            return
        if inc == 0:
            raise H2StreamError(sid, PROTOCOL_ERROR)
        stream.send_window += inc
        if stream.send_window > MAX_WINDOW:
            raise H2StreamError(sid, FLOW_CONTROL_ERROR)
        if stream.pending:
            self._unblock()

    def _settings(self, pairs: list[tuple[int, int]]) -> None:
        self._settings_seen = True
        for key, value in pairs:
            if key == HEADER_TABLE_SIZE:  # our encoder keeps no table
                self._table_update = True
            elif key == INITIAL_WINDOW_SIZE:
                delta, self.peer_initial_window = value - self.peer_initial_window, value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise H2ConnectionError(FLOW_CONTROL_ERROR, "stream window overflow")
            elif key == MAX_FRAME_SIZE:
                self._max_frame = value
        self.queue(_SETTINGS_ACK)
        self._unblock()

    def _end_block(self) -> None:
        block, sid, end = self._block, self._block_sid, self._block_end
        self._block = None
        assert block is not None
        try:
            headers = self._decoder.decode(bytes(block))
        except (hpack.HPACKError, UnicodeDecodeError, ValueError, IndexError) as e:
            raise H2ConnectionError(COMPRESSION_ERROR, f"bad header block: {e}") from None
        stream = self._streams.get(sid)
        if stream is not None:  # trailers: the request's last frame
            if not end or stream.recv_ended:
                raise H2StreamError(sid, PROTOCOL_ERROR)
            stream.received(b"", True)
        elif sid <= self.last_sid:
            if sid not in self._reset_sids:  # frames after our RST_STREAM are ignored
                raise H2ConnectionError(STREAM_CLOSED, f"HEADERS on closed stream {sid}")
        else:
            self.last_sid = sid
            if not self._closing:
                self._open(sid, headers, end)

    # ------------------------------------------------------------------------- streams

    def _open(self, sid: int, headers: list[tuple[str, str]], end: bool) -> None:
        fields = dict(headers)
        path = fields.get(":path")
        if path is None or ":method" not in fields:
            raise H2StreamError(sid, PROTOCOL_ERROR)
        server = self._server
        handler = server.mapping.get(path)
        refusal = self._refusal(fields, handler)
        deadline = None
        if refusal is None and "grpc-timeout" in fields:
            try:
                deadline = Deadline.from_headers(headers)
            except ValueError:
                refusal = 200, Status.UNKNOWN, "Invalid grpc-timeout header"
        if refusal is not None:
            self._abort(sid, end, *refusal)
            return
        content_type = fields["content-type"]
        assert self._peer is not None
        stream = H2Stream(
            self,
            sid,
            method_name=path,
            handler=handler,
            codec=server.codec,
            dispatch=server.dispatch,
            metadata=decode_metadata(headers),
            peer=self._peer,
            user_agent=fields.get("user-agent"),
            deadline=deadline,
            content_type=content_type,
        )
        stream.recv_ended = end
        self._streams[sid] = stream
        loop = asyncio.get_running_loop()
        stream.task = loop.create_task(self._serve(stream))
        server.track(stream.task)
        if deadline is not None:
            stream.timer = loop.call_later(deadline.time_remaining(), self._expire, stream)

    def _refusal(
        self, fields: dict[str, str], handler: Any
    ) -> tuple[int, Status | None, str | None] | None:
        """Why a request is not a gRPC call of ours, as grpclib answers it; None if it is."""
        if fields[":method"] != "POST":
            return 405, None, None
        content_type = fields.get("content-type")
        if content_type is None:
            return 415, Status.UNKNOWN, "Missing content-type header"
        base, _, subtype = content_type.partition("+")
        if base != "application/grpc" or (subtype or "proto") != self._server.codec_subtype:
            return 415, Status.UNKNOWN, "Unacceptable content-type header"
        if fields.get("te") != "trailers":
            return 400, Status.UNKNOWN, 'Required "te: trailers" header is missing'
        if handler is None:
            return 200, Status.UNIMPLEMENTED, "Method not found"
        return None

    def _abort(
        self,
        sid: int,
        end: bool,
        http_status: int,
        status: Status | None = None,
        message: str | None = None,
    ) -> None:
        """Answer a request that is not a gRPC call of ours as grpclib does, headers only."""
        block = self._server.head if http_status == 200 else literal(":status", str(http_status))
        if status is not None:
            block += literal("grpc-status", str(status.value))
            block += literal("grpc-message", encode_grpc_message(message or ""))
        self.queue(self._header_block(sid, block, END_STREAM))
        if not end:
            self._reset(sid, NO_ERROR)

    async def _serve(self, stream: H2Stream) -> None:
        try:
            await stream.run()
        except asyncio.CancelledError:
            if not stream.expired:
                return  # reset by the client, or the connection closed: no trailers
            log.info("Deadline exceeded")
            stream.status, stream.status_message = Status.DEADLINE_EXCEEDED, None
        except Exception:
            log.exception("Application error")
            stream.status, stream.status_message = Status.UNKNOWN, "Internal Server Error"
        finally:
            if stream.timer is not None:
                stream.timer.cancel()
            if not stream.done and not self._closing:
                self._finish(stream)

    def _expire(self, stream: H2Stream) -> None:
        stream.expired = True
        if stream.task is not None:
            stream.task.cancel()

    def _finish(self, stream: H2Stream) -> None:
        """Queue the trailers and close the stream. A handler ended (failed, cancelled by its
        deadline) inside a reply still held back by flow control cannot finish that message:
        the stream is reset instead (CANCEL)."""
        if stream.pending:
            self._reset(stream.sid, CANCEL)
            return
        block = b"" if stream.headers_sent else self._server.head
        block += _OK_TRAILERS if stream.status is Status.OK else self._status(stream)
        self.queue(self._header_block(stream.sid, block, END_STREAM))
        stream.done = True
        self._forget(stream)
        if not stream.recv_ended:  # the request is not complete: tell the client to stop
            self._reset(stream.sid, NO_ERROR)

    @staticmethod
    def _status(stream: H2Stream) -> bytes:
        block = literal("grpc-status", str(stream.status.value))
        if stream.status_message is not None:
            block += literal("grpc-message", encode_grpc_message(stream.status_message))
        return block

    def _forget(self, stream: H2Stream) -> None:
        self._streams.pop(stream.sid, None)
        self._blocked.pop(stream.sid, None)
        if self._peer_gone and not self._streams:
            self._close()

    def _drop(self, stream: H2Stream) -> None:
        """The stream was reset (or the connection lost): cancel its handler, drop its bytes."""
        stream.done = True
        stream.pending = b""
        self._forget(stream)
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        stream.release()
        stream.received(b"", True)

    def _reset(self, sid: int, code: int) -> None:
        """End stream ``sid`` with RST_STREAM(``code``) (a stream error, or NO_ERROR)."""
        self.queue(frame(RST_STREAM, 0, sid, struct.pack(">I", code)))
        stream = self._streams.get(sid)
        if stream is not None:
            self._drop(stream)
        self._note_reset(sid)

    def _note_reset(self, sid: int) -> None:
        """Remember that we reset ``sid``: the client's frames already in flight are ignored."""
        resets = self._reset_sids
        resets[sid] = None
        if len(resets) > RESETS_KEPT:
            del resets[next(iter(resets))]

    # ---------------------------------------------------------------------- frames out

    def queue(self, data: bytes) -> None:
        """Write ``data`` with the rest of this event-loop turn's output."""
        self._out.append(data)
        self._schedule()

    def _schedule(self) -> None:
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        out, self._out = self._out, []
        transport = self._transport
        if out and transport is not None and not transport.is_closing():
            transport.write(b"".join(out))

    def _header_block(self, sid: int, block: bytes, flags: int) -> bytes:
        if self._table_update:
            self._table_update = False
            block = b"\x20" + block  # dynamic table size update: 0
        step = self._max_frame
        if len(block) <= step:
            return frame(HEADERS, flags | END_HEADERS, sid, block)
        parts = [frame(HEADERS, flags, sid, block[:step])]
        for i in range(step, len(block), step):
            last = i + step >= len(block)
            parts.append(frame(CONTINUATION, END_HEADERS if last else 0, sid, block[i : i + step]))
        return b"".join(parts)

    def send(self, stream: H2Stream, data: bytes) -> None:
        """Queue reply bytes on ``stream`` (its response headers first), within the windows."""
        if not stream.headers_sent:
            stream.headers_sent = True
            self._out.append(self._header_block(stream.sid, self._server.head, 0))
        if stream.pending:
            stream.pending += data
        else:
            self._push(stream, data)
        self._schedule()

    def _push(self, stream: H2Stream, data: bytes) -> None:
        pos, size, out, sid = 0, len(data), self._out, stream.sid
        view = memoryview(data)  # frames are header + a view: the join is the one copy
        while pos < size:
            n = min(size - pos, self._max_frame, self._send_window, stream.send_window)
            if n <= 0:
                break
            out.append(_DATA_HEAD.pack(n << 8 | DATA, 0, sid))
            out.append(view[pos : pos + n])
            pos += n
            self._send_window -= n
            stream.send_window -= n
        if pos < size:
            stream.pending = data[pos:]
            self._blocked[sid] = stream
        else:
            stream.pending = b""
            self._blocked.pop(sid, None)

    def _unblock(self) -> None:
        """The windows grew: send what waits, in stream order, and wake drained writers."""
        for stream in list(self._blocked.values()):
            if self._send_window <= 0:
                break
            self._push(stream, stream.pending)
            if not stream.pending and not self.paused:
                stream.release()
        self._schedule()

    # ----------------------------------------------------------------------- closing

    def _fail(self, code: int, reason: str) -> None:
        """A connection error: GOAWAY with ``code``, then close."""
        peer = self._peer.addr() if self._peer is not None else None
        log.info("HTTP/2 connection error from %s: %s (code %d)", peer, reason, code)
        self._goaway(code, reason.encode())
        self._close()

    def _goaway(self, code: int, debug: bytes = b"") -> None:
        if not self._closing:
            self._closing = True
            payload = struct.pack(">II", self.last_sid, code) + debug
            self.queue(frame(GOAWAY, 0, 0, payload))

    def _close(self) -> None:
        self._flush()
        if self._transport is not None:
            self._transport.close()

    def shutdown(self) -> None:
        """The server stops: GOAWAY, cancel the handlers, close the connection."""
        self._goaway(NO_ERROR)
        for stream in list(self._streams.values()):
            self._drop(stream)
        self._close()
