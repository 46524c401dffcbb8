"""Listening sockets for client and peer URLs, bound before anything else starts.

Theory of operation: a server that cannot listen must say so at once, before it bootstraps a
cluster, campaigns or writes a byte to its data directory (etcd's ``embed.StartEtcd`` also
opens its peer and client listeners before ``NewServer`` touches the data directory). So
:func:`bind_all` binds *and listens on* every URL first, with plain sockets: a busy port fails
with :class:`ListenError`, one line naming the URL ("cannot listen for client requests on
http://127.0.0.1:2379: address already in use"), and nothing else has happened yet. The
sockets listen right away (``listen()`` is what makes a port exclusive under SO_REUSEADDR on
Linux), so a connection made before the server serves waits in the kernel's backlog; they are
served later (client URLs once this member is published, peer URLs when the node starts).

A host name is resolved as asyncio's ``create_server`` does (every address, e.g. ``localhost``
on 127.0.0.1 and ::1), so one URL may give several sockets.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

from .urls import parse_url

__all__ = ["BACKLOG", "ListenError", "bind_all", "bind_url", "close_all"]

#: Queued connections per socket (asyncio's create_server would use 100; etcd uses the OS max).
BACKLOG = 1024


class ListenError(OSError):
    """A URL cannot be listened on (the message names it and says why)."""


def bind_url(url: str, what: str) -> list[socket.socket]:
    """Listening sockets for ``url`` (``http(s)://host:port``); ``what`` names the traffic
    ("client requests", "peers") in the error.

    Raises:
        ListenError: the address is in use, not local, not permitted, or does not resolve.
    """
    host, port = parse_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(f"cannot listen for {what} on {url}: {e.strerror}") from None
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError as e:
        close_all(socks)
        why = (e.strerror or str(e)).lower()
        raise ListenError(f"cannot listen for {what} on {url}: {why}") from None
    return socks


def bind_all(urls: Iterable[str], what: str) -> dict[str, list[socket.socket]]:
    """:func:`bind_url` for every URL; on a failure the sockets bound so far are closed."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for url in urls:
            bound[url] = bind_url(url, what)
    except BaseException:
        close_all(s for socks in bound.values() for s in socks)
        raise
    return bound


def close_all(socks: Iterable[socket.socket]) -> None:
    """Close sockets (never raises)."""
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()
