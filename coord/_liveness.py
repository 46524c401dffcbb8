"""Liveness of a server connection: how long a silent server is given before it is dropped.

Theory of operation. A server that accepts TCP connections but never answers (a hung or
SIGSTOPped process, a frozen host, a port held by something else) sends no RST and no FIN, so
only silence tells it apart from a slow server. Both transports (the blocking
:class:`coord._h2.Channel` and the asyncio connections of :class:`coord._conn.Connection`)
follow one rule, kept here, with one number, the client's ``connect_timeout`` (``T``, 2 s by
default), per connection and per call:

* **Connect**: TCP connect, the TLS handshake and the server's first HTTP/2 frame (its
  SETTINGS) must arrive within ``T``. No request is written before, so a failure here means
  the request surely never reached a server (a write may go to the next endpoint).
* **Before use**: a call about to be written on a connection that received nothing for
  ``PROBE_IDLE`` seconds first sends a PING and waits up to ``T`` for any answer; only then is
  the request written. A server that froze while the connection sat idle is so left without
  an ambiguous write. Cost: one round trip, only after an idle second.
* **While a call waits** for its response: after ``T / 2`` without a byte the client sends a
  PING; without any byte ``T / 2`` later the connection is dead (the request may have been
  processed: reads are retried elsewhere, writes report an unknown outcome). Once a PING was
  answered, the next one waits ``keepalive`` seconds of silence, unless the server sent more
  than PING ACKs in between: grpc-go servers (etcd) count PINGs closer than 5 s that are not
  separated by a response as abuse and close the connection (``too_many_pings``).

A connection dropped by these rules marks its endpoint as unresponsive for the rest of the
call (the retry loop does not wait on it again), so a call whose every endpoint is stuck fails
with ``ConnectionFailedError`` after about ``T`` instead of the call's whole ``timeout``.
``connect_timeout=None`` turns the rule off (then only ``keepalive`` pings, after ``keepalive``
seconds of silence, with ``keepalive / 2`` to answer).
"""

from __future__ import annotations

import time

__all__ = ["PROBE_IDLE", "Liveness", "budget", "only_ping_ack"]

#: Seconds without a byte from the server after which a connection is PINGed before use.
PROBE_IDLE = 1.0

#: A PING ACK frame is 9 header bytes and 8 payload bytes.
_PING_ACK_LEN = 17


def only_ping_ack(data: bytes) -> bool:
    """True when ``data`` is exactly one HTTP/2 PING ACK frame (no response bytes)."""
    return len(data) == _PING_ACK_LEN and data[3] == 6 and data[4] & 1 == 1


def budget(timeout: float | None, connect_timeout: float | None) -> tuple[float | None, bool]:
    """The time a connect or probe may take, and whether ``connect_timeout`` is that limit
    (rather than the call's remaining ``timeout``)."""
    if connect_timeout is None:
        return timeout, False
    if timeout is None or connect_timeout <= timeout:
        return connect_timeout, True
    return timeout, False


class Liveness:
    """What one connection knows of its server's liveness, and when to act (see the module
    docstring). Times are ``time.monotonic()`` seconds.

    Invariant: ``ping_sent`` is set only while a PING is unanswered.
    """

    __slots__ = ("answered", "keepalive", "last_ping", "last_recv", "ping_sent", "timeout")

    def __init__(self, timeout: float | None, keepalive: float | None) -> None:
        self.timeout = timeout
        self.keepalive = keepalive
        self.last_recv = time.monotonic()  # when the server last sent anything
        self.ping_sent: float | None = None  # our unanswered PING's send time
        self.last_ping = float("-inf")  # when we last sent a PING
        self.answered = True  # the server sent more than PING ACKs since our last PING

    def received(self, now: float, only_ack: bool = False) -> None:
        """Bytes arrived at ``now`` (``only_ack``: nothing but a PING ACK)."""
        self.last_recv = now
        self.ping_sent = None
        if not only_ack:
            self.answered = True

    def pinged(self, now: float) -> None:
        """We sent a PING at ``now``."""
        self.ping_sent = self.last_ping = now
        self.answered = False

    def stale(self, now: float) -> bool:
        """True when a call must PING the connection before writing on it."""
        return self.timeout is not None and now - self.last_recv >= PROBE_IDLE

    def _quiet(self) -> tuple[float, float] | None:
        """(silence before a PING, time a PING has to be answered), None: no PINGs."""
        if self.timeout is not None:
            return self.timeout / 2, self.timeout / 2
        if self.keepalive is not None:
            return self.keepalive, self.keepalive / 2
        return None

    def check(self, now: float) -> tuple[str, float | None]:
        """While a call waits for its answer: ``("ping", now)`` (send one now), ``("dead",
        now)`` (drop the connection) or ``("wait", t)`` (look again at ``t``; None: never)."""
        quiet = self._quiet()
        if quiet is None:
            return "wait", None
        silence, answer = quiet
        if self.ping_sent is not None:
            dead_at = self.ping_sent + answer
            return ("dead", now) if now >= dead_at else ("wait", dead_at)
        ping_at = self.last_recv + silence
        if not self.answered:  # the last PING got only its ACK: respect etcd's 5 s rule
            if self.keepalive is None:
                return "wait", None
            ping_at = max(ping_at, self.last_ping + self.keepalive)
        return ("ping", now) if now >= ping_at else ("wait", ping_at)

    def silent_message(self, authority: str) -> str:
        """The error text for a connection found dead while a call waited."""
        quiet = self._quiet()
        total = sum(quiet) if quiet else 0.0
        return f"{authority} sent nothing for {total!r} s, not even a PING ACK: unresponsive"
