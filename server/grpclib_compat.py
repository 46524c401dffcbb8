"""The one place where coord-server uses grpclib's private internals.

Theory of operation. The server needs more of grpclib's ``Server`` than its public API
offers: coord's own HTTP/2 connections (:mod:`coord.server.http.grpcserver`) and the JSON
gateway (:mod:`coord.server.http.gateway`) run the gRPC handlers without grpclib's protocol,
and the handlers read request frames themselves to enforce the receive limit before buffering
a payload (:func:`coord.server.api.common.recv_frame`). Each
such access is one small function here, and nothing else in the server touches a private
grpclib attribute. :func:`check_version` refuses, at import, a grpclib whose internals these
functions were not checked against (:data:`SUPPORTED_VERSIONS`), and
tests/test_grpclib_compat.py exercises every access against a real grpclib ``Server`` on
loopback, so a grpclib upgrade fails loudly here, in one place.

The private internals used, and why:

* ``Server._mapping``, ``Server._codec`` and ``Server.__dispatch__`` (a
  ``grpclib.events._DispatchServerEvents``: ``recv_request``, ``recv_message``,
  ``send_message``): :func:`server_mapping`, :func:`server_codec`, :func:`server_dispatch`, so
  coord's transports run a handler with the server's own codec and event listeners;
  :func:`sends_unobserved` reads whether a ``SendMessage`` listener exists (a key of the
  dispatcher's ``__dict__``), so a batch of replies skips the no-op dispatch per message.
* ``server.Stream._stream`` (a ``grpclib.protocol.Stream``, whose ``recv_data(n)`` reads raw
  request bytes): :func:`h2_stream`, called once per request; a plain attribute read. coord's
  streams (:class:`coord.server.http.callstream.CallStream`) offer the same attribute, so
  handlers read frames the same way from all of them.
"""

from __future__ import annotations

from typing import Any, Protocol

from grpclib.const import Handler as MethodHandler
from grpclib.encoding.base import CodecBase
from grpclib.events import _DispatchServerEvents
from grpclib.server import Server, Stream

from coord._grpclib_version import SUPPORTED_VERSIONS
from coord._grpclib_version import check_version as _check_version

__all__ = [
    "SUPPORTED_VERSIONS",
    "FrameReader",
    "MethodHandler",
    "ServerDispatch",
    "check_version",
    "h2_stream",
    "server_codec",
    "server_dispatch",
    "server_mapping",
    "sends_unobserved",
]

#: The server's event dispatcher (``RecvRequest``, ``RecvMessage``, ``SendMessage``, ...).
ServerDispatch = _DispatchServerEvents


def check_version() -> None:
    """Raise ``ImportError`` unless the installed grpclib is one of :data:`SUPPORTED_VERSIONS`
    (run when this module is imported)."""
    _check_version("coord-server", "server/grpclib_compat.py")


check_version()


class FrameReader(Protocol):
    """What a handler reads request bytes from: ``recv_data(n)`` returns up to ``n`` bytes,
    fewer only at the end of the request stream."""

    async def recv_data(self, size: int) -> bytes: ...


def h2_stream(stream: Stream[Any, Any]) -> FrameReader:
    """The request stream under a server stream, to read gRPC frames from directly."""
    return stream._stream


def server_mapping(server: Server) -> dict[str, MethodHandler]:
    """``server``'s method table: gRPC path -> handler."""
    return server._mapping


def server_codec(server: Server) -> CodecBase:
    """The codec ``server`` encodes and decodes messages with."""
    return server._codec


def sends_unobserved(dispatch: ServerDispatch) -> bool:
    """True while no ``SendMessage`` listener is registered: grpclib then keeps its identity
    placeholder for ``send_message`` in the dispatcher's own ``__dict__`` (``_Dispatch``
    sets it there and ``add_listener`` removes it), so sending need not call it."""
    return "send_message" in vars(dispatch)


def server_dispatch(server: Server) -> ServerDispatch:
    """``server``'s event dispatcher, which runs its event listeners."""
    return server.__dispatch__
