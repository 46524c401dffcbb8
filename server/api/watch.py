"""etcdserverpb.Watch: one bidi stream carrying many watchers.

Theory of operation: each Watch RPC opens a :class:`coord.server.watch.WatchStream` on the hub
and runs two tasks in one task group: the receiver parses WatchRequests and hands them to the
hub stream; the sender waits on an event that the hub sets through ``wakeup()`` and sends
whatever ``next_responses`` has ready. The hub never blocks on us: if this client is slow,
only this sender waits (HTTP/2 flow control) and its watchers lag, catching up from history.
A client half-close ends only the receiver (etcd keeps the stream open); a malformed request
ends the whole stream with INVALID_ARGUMENT; a stream opened with ``hasleader: true`` (etcdctl
watch, clientv3's WithRequireLeader) ends with ``etcdserver: no leader`` once the member loses
its leader, as etcd cancels such streams. Cleanup (``close()``) is in ``finally``, so it
runs on every exit path, including the cancellation grpclib delivers on disconnect.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from grpclib.const import Cardinality, Handler, Status

from coord._pb import etcdserverpb as pb
from coord.errors import CoordError, NoLeaderError
from coord.server.watch import WatchHub

from .callstats import CODE_NAMES
from .common import (
    ApiContext,
    RawStream,
    handler,
    parse,
    raise_first,
    recv_frame,
    send_responses,
    to_grpc_error,
)

__all__ = ["WatchService"]

log = logging.getLogger("coord.server.api.watch")

#: Upper bound on bytes pulled from the hub per send batch.
SEND_BATCH_BYTES = 256 * 1024
#: How often a ``hasleader`` stream checks that the member still knows a leader.
LEADER_CHECK_INTERVAL = 1.0


async def _after_replies() -> None:
    """Let the replies that became ready with these events go out before them: one loop turn
    for their handlers to write them, one for the connections to flush (an HTTP/2 connection
    writes once per turn). A writer then has its answer while its events fan out, instead
    of after."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


class WatchService:
    """The Watch service."""

    def __init__(self, ctx: ApiContext, hub: WatchHub) -> None:
        self.ctx = ctx
        self.hub = hub

    async def watch(self, stream: RawStream) -> None:
        """Serve one Watch stream until the client goes away."""
        ctx = self.ctx
        try:
            ctx.check_leader(stream)
        except CoordError as e:
            raise to_grpc_error(e) from None
        md = stream.metadata
        require_leader = md is not None and md.get("hasleader") == "true"
        ready = asyncio.Event()
        ws = self.hub.open_stream(ready.set)
        interval = ctx.config.watch_progress_notify_interval
        try:
            async with anyio.create_task_group() as tg:

                async def receive() -> None:
                    while True:
                        data = await recv_frame(stream, ctx.recv_limit)
                        if data is None:
                            return  # half-close: keep sending (etcd behaviour)
                        try:
                            req = parse(pb.WatchRequest, data)
                        except CoordError as e:
                            raise to_grpc_error(e) from None
                        create = req.create_request
                        try:
                            if create is not None:  # auth: read on the range, per watch
                                ctx.guard.authorize_watch(stream, create.key, create.range_end)
                            ws.handle_request(req)
                        except CoordError as e:
                            assert create is not None
                            # etcd 3.4 sends the whole gRPC error text as the reason
                            code = CODE_NAMES.get(Status(int(e.code)), "Unknown")
                            reason = f"rpc error: code = {code} desc = {e.message}"
                            ws.refuse(create.watch_id, reason)
                        ready.set()

                async def send() -> None:
                    # timers set ``ready`` too (no timeout scope per wakeup: they cost more
                    # than the rest of a wakeup)
                    loop = asyncio.get_running_loop()
                    next_tick = loop.time() + interval
                    next_check = loop.time() + LEADER_CHECK_INTERVAL
                    timer = loop.call_at(next_tick, ready.set)
                    try:
                        while True:
                            await ready.wait()
                            ready.clear()
                            now = loop.time()
                            if now >= next_tick:
                                ws.tick_progress()
                                next_tick = now + interval
                            if require_leader:
                                if not ctx.node.leader_id():
                                    raise to_grpc_error(NoLeaderError())
                                if now >= next_check:
                                    next_check = now + LEADER_CHECK_INTERVAL
                            when = min(next_tick, next_check) if require_leader else next_tick
                            if timer.when() != when:
                                timer.cancel()
                                timer = loop.call_at(when, ready.set)
                            await _after_replies()
                            while batch := ws.next_responses(SEND_BATCH_BYTES):
                                await send_responses(stream, batch)
                    finally:
                        timer.cancel()

                tg.start_soon(receive)
                tg.start_soon(send)
        except* Exception as eg:
            raise_first(eg)
        finally:
            ws.close()

    def __mapping__(self) -> dict[str, Handler]:
        """grpclib handler table."""
        return {"/etcdserverpb.Watch/Watch": handler(self.watch, Cardinality.STREAM_STREAM)}
