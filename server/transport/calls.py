"""Leader calls on the wire: the call connection (client side) and serving calls.

Theory of operation: forwarded leader-only requests (:meth:`PeerTransport.call`, e.g. a
follower's lease keep-alive) travel on one further connection per peer (kind ``call``), dialed
on first use and kept.  CALL frames carry a call id; the acceptor answers each call in its own
task (:func:`serve_calls`) and RESULT frames carry the id back, so calls are multiplexed and a
slow one delays no other (:class:`CallConn`).  A broken call connection fails its waiting
calls with OSError; the next call dials again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from .dial import CLOSED, CONNECT_TIMEOUT, describe
from .frames import FrameType, read_frame, write_frame

__all__ = ["CallConn", "serve_calls"]

_ENC = msgspec.msgpack.Encoder()


class CallConn:
    """One peer's call connection: CALL frames ``(id, method, body)`` are written one at a
    time by the callers, RESULT frames ``(id, ok, body)`` are read by :meth:`read_results` and
    handed to the caller waiting for that id, so calls are multiplexed and may finish in any
    order. When the connection fails every waiting caller gets OSError and the next call dials
    a new connection."""

    def __init__(self, peer_id: int, stream: anyio.abc.ByteStream) -> None:
        self.peer_id = peer_id
        self.stream = stream
        self.open = True
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[tuple[bool, bytes]]] = {}
        self._write_lock = anyio.Lock()
        self._scope = anyio.CancelScope()

    async def call(self, method: str, body: bytes) -> tuple[bool, bytes]:
        self._next_id += 1
        call_id = self._next_id
        fut: asyncio.Future[tuple[bool, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = fut
        try:
            try:
                async with self._write_lock:
                    # never cut a frame in half (the caller's timeout): the stream would be
                    # garbage for every later call; a write that cannot finish closes it
                    with anyio.CancelScope(shield=True) as scope:
                        scope.deadline = anyio.current_time() + 2 * CONNECT_TIMEOUT
                        await write_frame(
                            self.stream, FrameType.CALL, _ENC.encode((call_id, method, body))
                        )
                    if scope.cancelled_caught:
                        raise OSError("write timed out")
            except CLOSED as e:
                self.close()
                raise OSError(f"call connection to {self.peer_id:x} failed: {e}") from None
            return await fut
        finally:
            self._waiting.pop(call_id, None)

    async def read_results(self) -> None:
        reason = "closed"
        try:
            with self._scope:
                reader = BufferedByteReceiveStream(self.stream)
                while True:
                    ftype, payload = await read_frame(reader)
                    if ftype != FrameType.RESULT:
                        reason = f"unexpected frame {ftype!r}"
                        break
                    call_id, ok, result = msgspec.msgpack.decode(
                        payload, type=tuple[int, bool, bytes]
                    )
                    fut = self._waiting.get(call_id)
                    if fut is not None and not fut.done():
                        fut.set_result((ok, result))
        except Exception as e:
            reason = describe(e)
        finally:  # also when the transport stops (cancelled): the stream is closed, not leaked
            self.open = False
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(
                        OSError(f"call connection to {self.peer_id:x} lost: {reason}")
                    )

    def close(self) -> None:
        self.open = False
        self._scope.cancel()


async def serve_calls(
    on_call: Callable[[str, bytes], Awaitable[bytes]],
    reader: BufferedByteReceiveStream,
    stream: anyio.abc.ByteStream,
) -> None:
    """Answer CALL frames as they come, each in its own task (one slow call does not
    hold up the others); RESULT frames carry the call's id and are written one at a time."""
    write_lock = anyio.Lock()

    async def answer(call_id: int, method: str, body: bytes) -> None:
        try:
            result = (call_id, True, await on_call(method, body))
        except Exception as e:
            result = (call_id, False, str(e).encode())
        try:
            async with write_lock:
                await write_frame(stream, FrameType.RESULT, _ENC.encode(result))
        except CLOSED:
            pass  # the caller went away; it has given up on this call

    async with anyio.create_task_group() as tg:
        try:
            while True:
                ftype, payload = await read_frame(reader)
                if ftype != FrameType.CALL:
                    break
                call_id, method, body = msgspec.msgpack.decode(payload, type=tuple[int, str, bytes])
                tg.start_soon(answer, call_id, method, body)
        except CLOSED:
            pass  # the caller closed its call connection
        tg.cancel_scope.cancel()
