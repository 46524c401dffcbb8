"""grpclib's services served by coord's own HTTP/2 connections.

Theory of operation. A ``grpclib.server.Server`` is built from the services as usual but never
started: :class:`GrpcServer` takes its method table, codec and event dispatcher
(:mod:`coord.server.grpclib_compat`) and gives each accepted connection a
:class:`~.h2conn.GrpcConnection` that runs the handlers with them. It tracks the connections
and the handler tasks, so that closing the server sends GOAWAY everywhere, cancels the running
calls and waits for them, as grpclib's ``Server.close``/``wait_closed`` do.
"""

from __future__ import annotations

import asyncio

from grpclib.server import Server

from coord._h2wire import literal
from coord.server.grpclib_compat import server_codec, server_dispatch, server_mapping

from .h2conn import GrpcConnection

__all__ = ["GrpcServer"]

_STATUS_200 = b"\x88"  # ":status: 200", static table entry 8


class GrpcServer:
    """grpclib's method table, codec and dispatcher, served over :class:`GrpcConnection`\\ s.

    ``server`` is a ``grpclib.server.Server`` that is never started itself. :meth:`close`
    sends GOAWAY on every connection and cancels the running handlers.
    """

    def __init__(self, server: Server) -> None:
        self.mapping = server_mapping(server)
        self.codec = server_codec(server)
        self.dispatch = server_dispatch(server)
        self.codec_subtype: str = self.codec.__content_subtype__
        self.content_type = f"application/grpc+{self.codec_subtype}"
        #: the response headers of every call
        self.head = _STATUS_200 + literal("content-type", self.content_type)
        self.connections: set[GrpcConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a handler task until it ends (:meth:`wait_closed` waits for it)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def protocol(self) -> GrpcConnection:
        """The protocol for one accepted connection."""
        return GrpcConnection(self)

    def close(self) -> None:
        """GOAWAY every connection and cancel its handlers."""
        for conn in list(self.connections):
            conn.shutdown()

    async def wait_closed(self) -> None:
        """Wait until every connection's handlers have ended."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))
