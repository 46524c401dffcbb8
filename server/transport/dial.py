"""Dialing peers: connections, their failures, and discovery of an existing cluster.

Theory of operation: every outbound peer connection is dialed here (:func:`dial`: TCP, or TLS
for ``https://`` peer URLs, the server certificate checked against the host) within
:data:`CONNECT_TIMEOUT`.  What reading or writing a connection the other end closed raises is
:data:`CLOSED`; a peer that refuses our HELLO raises :class:`Rejected`.

A joining member (``--initial-cluster-state existing``), and a member about to bootstrap a new
cluster (to refuse bootstrapping twice), first calls :func:`discover` against the peer URLs it
was given: a ``discover`` HELLO is answered with a MEMBERS frame (the cluster id and the member
list), which is how it learns its own member id.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable

import anyio
import anyio.abc
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from coord.server.tls import is_tls_url
from coord.server.urls import parse_url

from .frames import FrameType, Hello, read_frame, write_frame

__all__ = ["CLOSED", "CONNECT_TIMEOUT", "Rejected", "describe", "dial", "discover"]

_ENC = msgspec.msgpack.Encoder()
CONNECT_TIMEOUT = 1.0
#: What reading or writing a connection the other end closed raises.
CLOSED = (
    OSError,
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)


def describe(e: BaseException) -> str:
    """A one-line description (the leaves of an exception group)."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


class Rejected(Exception):
    """The remote end refused our HELLO."""


async def dial(host: str, port: int, ctx: ssl.SSLContext | None) -> anyio.abc.ByteStream:
    """TCP, or TLS when ``ctx`` is given (the server certificate must match ``host``)."""
    if ctx is None:
        return await anyio.connect_tcp(host, port)
    return await anyio.connect_tcp(host, port, ssl_context=ctx, tls_standard_compatible=False)


async def discover(
    peer_urls: Iterable[str],
    timeout: float = 5.0,
    on_error: Callable[[str, Exception], None] | None = None,
    client_ssl: ssl.SSLContext | None = None,
) -> bytes:
    """Ask the first reachable peer for its membership document.

    Raises:
        OSError: no peer answered within ``timeout`` per attempt.
    """
    urls = list(peer_urls)
    last: Exception = OSError("no peer URLs given")
    for url in urls:
        try:
            host, port = parse_url(url)
            with anyio.fail_after(timeout):
                stream = await dial(host, port, client_ssl if is_tls_url(url) else None)
                async with stream:
                    await write_frame(
                        stream, FrameType.HELLO, _ENC.encode(Hello(0, 0, 0, "discover"))
                    )
                    ftype, payload = await read_frame(BufferedByteReceiveStream(stream))
            if ftype == FrameType.MEMBERS:
                return payload
            last = OSError(f"{url}: unexpected frame {ftype!r}")
        except (
            OSError,
            TimeoutError,
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            ValueError,
        ) as e:  # a reset during TLS: Broken
            last = e
            if on_error is not None:
                on_error(url, e)
    raise OSError(f"could not reach any member at {urls}: {last}")
