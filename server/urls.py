"""URLs: the one parser of the server's client and peer URLs.

Theory of operation: every URL the server binds, advertises, dials or records in the member
list is ``http://host:port`` or ``https://host:port`` (TLS: server/tls.py), the form the flags
have always required.  :func:`parse_url` checks that form and returns ``(host, port)``; it is
used for the flags (server/config.py), binding (server/listen.py), MemberAdd/MemberUpdate
(server/node/reconfig.py) and dialing peers (server/transport/dial.py), so a URL accepted in
one place is accepted everywhere.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["parse_url"]


def parse_url(url: str) -> tuple[str, int]:
    """``http://host:port`` -> (host, port); ValueError for anything else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise ValueError(f"invalid URL {url!r}: expected http://host:port")
    return parts.hostname, parts.port
