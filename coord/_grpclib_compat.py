"""The one place where coord's client uses grpclib's private internals.

Theory of operation. coord's asyncio transport (:mod:`coord._conn`) needs more of grpclib than
its public API offers: its own HTTP/2 protocol (the liveness rule of :mod:`coord._liveness`),
a transport that coalesces writes, PINGs of its own, the TLS context to explain a failed
handshake, and ending a long-lived stream locally without waiting for the server. Each such
access is one small function or class here, and nothing else in the client touches a private
grpclib (or grpclib-held h2) attribute. :func:`check_version` refuses, at import, a grpclib
whose internals these functions were not checked against (:data:`SUPPORTED_VERSIONS`), and
tests/test_grpclib_compat.py exercises every access against a real grpclib ``Server`` and
``Channel`` on loopback, so a grpclib upgrade fails loudly here, in one place.

The private internals used, and why:

* ``grpclib.protocol`` (an undocumented module): :class:`H2Protocol` is the base class of
  coord's client protocol; its ``connection`` (a ``grpclib.protocol.Connection``) and
  ``processor`` (``EventsProcessor``) attributes, set by ``connection_made``, are used by
  :func:`protocol_open`, :func:`close_protocol`, :func:`send_ping` and the transport functions.
* ``grpclib.client.Handler``: the per-connection handler a client protocol is built with.
* ``Channel._protocol_factory()`` (overridden), ``Channel._config``, ``Channel._h2_config``:
  :class:`ClientChannel` builds its connections with a protocol factory of coord's.
* ``Channel._protocol`` and ``Channel._connected``: :func:`channel_protocol`,
  :func:`connected_protocol` (the latest connection's protocol; the open connection's).
* ``Channel.__connect__()``: :func:`connect_channel` connects before the first request is
  written (the liveness rule waits for the server's SETTINGS first).
* ``Channel._ssl``: :func:`channel_ssl`, the TLS context, to explain a failed handshake.
* ``Connection._transport``: :func:`protocol_transport`, :func:`replace_transport` (coord wraps
  it in a write-coalescing transport).
* ``Connection._connection`` (the ``h2.connection.H2Connection``): :func:`send_ping`.
* ``client.Stream._stream`` (a ``grpclib.protocol.Stream``: ``id``, ``closable``,
  ``reset_nowait()``, ``_h2_connection``), ``Stream._end_done`` and ``Stream._cancel_done``:
  :func:`h2_stream`, :func:`end_sent`, :func:`send_end_nowait`, :func:`mark_cancelled`, to
  end a stream locally (:func:`coord._conn.close_stream`).
* ``Configuration``'s underscored keepalive options (``_keepalive_time``,
  ``_keepalive_timeout``, ``_http2_max_pings_without_data``,
  ``_http2_min_sent_ping_interval_without_data``): :func:`keepalive_config`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from grpclib.client import Channel, Handler
from grpclib.client import Stream as ClientStream
from grpclib.config import Configuration
from grpclib.protocol import H2Protocol
from grpclib.protocol import Stream as ProtocolStream

from coord._grpclib_version import SUPPORTED_VERSIONS
from coord._grpclib_version import check_version as _check_version

__all__ = [
    "SUPPORTED_VERSIONS",
    "ClientChannel",
    "H2Protocol",
    "ProtocolFactory",
    "ProtocolStream",
    "channel_protocol",
    "channel_ssl",
    "check_version",
    "close_protocol",
    "connect_channel",
    "connected_protocol",
    "end_sent",
    "h2_stream",
    "keepalive_config",
    "mark_cancelled",
    "protocol_open",
    "protocol_transport",
    "replace_transport",
    "send_end_nowait",
    "send_ping",
]


def check_version() -> None:
    """Raise ``ImportError`` unless the installed grpclib is one of :data:`SUPPORTED_VERSIONS`
    (run when this module is imported)."""
    _check_version("coord's client", "coord/_grpclib_compat.py")


check_version()

#: Builds a client connection's protocol from grpclib's ``(handler, config, h2_config)``.
ProtocolFactory = Callable[[Handler, Configuration, Any], H2Protocol]


class ClientChannel(Channel):
    """A grpclib ``Channel`` whose connections are built by ``protocol_factory``."""

    def __init__(
        self, host: str, port: int, *, protocol_factory: ProtocolFactory, **kwargs: Any
    ) -> None:
        super().__init__(host, port, **kwargs)
        self._coord_protocol_factory = protocol_factory

    def _protocol_factory(self) -> H2Protocol:
        return self._coord_protocol_factory(Handler(), self._config, self._h2_config)


def channel_protocol(ch: Channel) -> H2Protocol | None:
    """The protocol of ``ch``'s latest connection (None before the first connect or after
    ``close``); it may be a lost connection's (see :func:`connected_protocol`)."""
    return ch._protocol


def connected_protocol(ch: Channel) -> H2Protocol | None:
    """The protocol of ``ch``'s connection while grpclib has not seen it lost, else None."""
    return ch._protocol if ch._connected else None


def channel_ssl(ch: Channel) -> ssl.SSLContext | None:
    """The TLS context ``ch`` connects with (None: plain TCP)."""
    return ch._ssl


async def connect_channel(ch: Channel) -> H2Protocol:
    """Connect ``ch`` unless it is connected; its connection's protocol."""
    return await ch.__connect__()


def protocol_open(proto: H2Protocol) -> bool:
    """True once ``proto``'s connection is made and while its transport is open."""
    return hasattr(proto, "connection") and not proto.connection.is_closing()


def close_protocol(proto: H2Protocol, reason: str) -> None:
    """Close ``proto``'s connection; its open streams end with ``StreamTerminatedError``
    (``reason``)."""
    proto.processor.close(reason)


def send_ping(proto: H2Protocol, payload: bytes) -> None:
    """Send an HTTP/2 PING with the 8-byte ``payload`` on ``proto``'s connection now."""
    proto.connection._connection.ping(payload)
    proto.connection.flush()


def protocol_transport(proto: H2Protocol) -> asyncio.Transport:
    """The transport ``proto``'s connection writes to."""
    return proto.connection._transport


def replace_transport(proto: H2Protocol, transport: Any) -> None:
    """Make ``proto``'s connection write to ``transport`` (a wrapper of the original). Only
    before the connection's first stream: each stream keeps the transport it was made with."""
    proto.connection._transport = transport


def h2_stream(stream: ClientStream[Any, Any]) -> ProtocolStream:
    """The HTTP/2 stream under a grpclib client stream (after ``send_request``)."""
    return stream._stream


def end_sent(stream: ClientStream[Any, Any]) -> bool:
    """True once grpclib has sent (or been told of) the stream's END_STREAM."""
    return bool(stream._end_done)


def send_end_nowait(stream: ClientStream[Any, Any]) -> None:
    """Queue END_STREAM on the stream's h2 connection (written with the next flush or write of
    that connection) and tell grpclib that the stream's end is sent."""
    h2s = h2_stream(stream)
    assert h2s.id is not None
    h2s._h2_connection.end_stream(h2s.id)
    stream._end_done = True


def mark_cancelled(stream: ClientStream[Any, Any]) -> None:
    """Tell grpclib that the stream is cancelled (it then neither resets it again nor waits for
    its trailers when its context ends)."""
    stream._cancel_done = True


def keepalive_config(keepalive: float) -> Configuration:
    """grpclib's client configuration that PINGs every ``keepalive`` seconds while calls or
    streams are open and closes a connection whose PING stays unanswered for half of that."""
    return Configuration(
        _keepalive_time=keepalive,
        _keepalive_timeout=keepalive / 2,
        _http2_max_pings_without_data=0,
        _http2_min_sent_ping_interval_without_data=keepalive,
    )
