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

Port 0 binds an ephemeral port (the same one on every address of the URL); :func:`bound_url`
gives the URL with the port the kernel chose, which the server logs and, with
``--listen-port-file``, writes down (server/app.py), so whoever started it can connect without
racing for a port. Peer URLs must be known before a cluster starts, so a supervisor that
wants them race-free binds them itself and passes the sockets in, as systemd's socket
activation does (``sd_listen_fds(3)``): when ``LISTEN_PID`` is this process and ``LISTEN_FDS``
is N, descriptors 3..3+N-1 are listening TCP sockets; :func:`bind_url` takes the inherited
socket whose address is the URL's instead of binding one. The variables are removed once
read, so child processes do not take the descriptors too.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, MutableMapping
from urllib.parse import urlsplit, urlunsplit

from .urls import parse_url

__all__ = [
    "BACKLOG",
    "LISTEN_FDS_START",
    "ListenError",
    "bind_all",
    "bind_url",
    "bound_url",
    "close_all",
    "take_inherited",
]

#: Queued connections per socket (asyncio's create_server would use 100; etcd uses the OS max).
BACKLOG = 1024
#: The first descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3

# Sockets passed by socket activation and not claimed by a URL yet (None: not read yet).
_inherited: list[socket.socket] | None = None


def take_inherited(environ: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets this process inherited through socket activation, read once.

    ``LISTEN_PID`` must name this process (else the variables were meant for a parent);
    ``LISTEN_FDS``, ``LISTEN_PID`` and ``LISTEN_FDNAMES`` are removed from ``environ``.
    Descriptors that are not listening TCP sockets are left alone.
    """
    global _inherited
    if _inherited is None:
        env = os.environ if environ is None else environ
        pid, count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
        env.pop("LISTEN_FDNAMES", None)
        _inherited = []
        if pid.isdigit() and int(pid) == os.getpid() and count.isdigit():
            for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)):
                try:
                    sock = socket.socket(fileno=fd)
                except OSError:
                    continue
                if sock.type == socket.SOCK_STREAM and sock.family in (
                    socket.AF_INET,
                    socket.AF_INET6,
                ):
                    _inherited.append(sock)
                else:
                    sock.detach()
    return _inherited


def _claim(family: int, addr: tuple[object, ...]) -> socket.socket | None:
    """The inherited socket bound to ``addr`` (host, port), removed from the pool."""
    pool = take_inherited()
    for sock in pool:
        with contextlib.suppress(OSError):
            if sock.family == family and sock.getsockname()[:2] == addr[:2]:
                pool.remove(sock)
                return sock
    return None


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
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(f"cannot listen for {what} on {url}: {e.strerror}") from None
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            if port == 0 and socks:  # every address of the URL on the port first chosen
                addr = (addr[0], socks[0].getsockname()[1], *addr[2:])
            inherited = _claim(family, addr) if port else None
            if inherited is not None:
                socks.append(inherited)
                inherited.setblocking(False)
                continue
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


def bound_url(url: str, socks: list[socket.socket]) -> str:
    """``url`` with the port its sockets are bound to (differs from ``url`` for port 0)."""
    parts = urlsplit(url.strip())
    if parts.port != 0 or not socks:
        return url
    host = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{host}:{socks[0].getsockname()[1]}"))


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
