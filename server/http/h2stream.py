"""One gRPC call's HTTP/2 stream on the server: its request bytes and its held-back replies.

Theory of operation. An :class:`H2Stream` is both halves of one call. To the handler it is a
:class:`~.callstream.CallStream`: request bytes come from :meth:`H2Stream.recv_data`, and
:meth:`H2Stream.write_messages` sends replies. To its connection (:mod:`.h2conn`) it is the
stream's flow-control state: the DATA the client sent (:meth:`H2Stream.received`) and the
receive window the handler's reading gives back (at once, as much as it waits for, when a
message is larger than the window, else once half of :data:`STREAM_WINDOW` was consumed), the
send window, and the reply bytes (``pending``) that wait for it. A writer whose
bytes wait, or whose connection's transport is full, is suspended until :meth:`release`.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING, Any

from coord._h2wire import WINDOW_UPDATE, frame

from .callstream import CallStream

if TYPE_CHECKING:
    from .h2conn import GrpcConnection

__all__ = ["STREAM_WINDOW", "H2Stream"]

_PREFIX = struct.Struct(">?I")  # a gRPC message's compressed flag and length
#: Each stream's receive window: a Watch or keep-alive stream's client may run this far ahead.
STREAM_WINDOW = 256 * 1024


class H2Stream(CallStream):
    """One request's HTTP/2 stream, and the handler's view of it (a CallStream)."""

    def __init__(self, conn: GrpcConnection, sid: int, **call: Any) -> None:
        super().__init__(**call)
        self._conn = conn
        self.sid = sid
        self._stream = self  # the FrameReader handlers read gRPC frames from
        self._rbuf = bytearray()
        self.recv_ended = False  # the client sent END_STREAM
        self.recv_window = STREAM_WINDOW  # what the client may still send on this stream
        self._reader: asyncio.Future[None] | None = None
        self.send_window = conn.peer_initial_window
        self.pending = b""  # reply bytes waiting for the send windows
        self.waiter: asyncio.Future[None] | None = None  # a writer waiting for the drain
        self.headers_sent = False
        self.done = False  # trailers sent, or the stream was reset
        self.expired = False  # the grpc-timeout ran out
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------------- request bytes

    def received(self, data: bytes, end: bool) -> None:
        """DATA from the client (``end``: it carried END_STREAM)."""
        if data:
            self._rbuf += data
        if end:
            self.recv_ended = True
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    async def recv_data(self, size: int) -> bytes:
        """``size`` request bytes; fewer only once the client ended its side."""
        buf = self._rbuf
        while len(buf) < size and not self.recv_ended:
            consumed = STREAM_WINDOW - self.recv_window - len(buf)
            self._credit(max(consumed, size - len(buf) - self.recv_window))
            self._reader = asyncio.get_running_loop().create_future()
            await self._reader
            self._reader = None
        data = bytes(buf[:size])
        del buf[:size]
        consumed = STREAM_WINDOW - self.recv_window - len(buf)
        if consumed >= STREAM_WINDOW // 2:
            self._credit(consumed)
        return data

    def _credit(self, n: int) -> None:
        if n > 0 and not self.recv_ended and not self.done:
            self.recv_window += n
            self._conn.queue(frame(WINDOW_UPDATE, 0, self.sid, struct.pack(">I", n)))

    # ------------------------------------------------------------------------- replies

    async def write_messages(self, messages: list[bytes]) -> None:
        """Send reply messages, as one run of DATA frames (waits while they are held back by
        flow control)."""
        if self.done:
            raise ConnectionResetError("the client reset the stream")
        conn = self._conn
        pack = _PREFIX.pack
        if len(messages) == 1:
            data = messages[0]
            conn.send(self, pack(False, len(data)) + data)
        else:
            conn.send(self, b"".join([pack(False, len(m)) + m for m in messages]))
        if self.pending or conn.paused:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
            if self.done:
                raise ConnectionResetError("the client reset the stream")

    def release(self) -> None:
        """Wake the writer waiting for this stream's replies to go out."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
