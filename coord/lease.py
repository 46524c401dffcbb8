"""Leases with automatic keep-alive and observable loss (async core).

Theory of operation. :class:`KeepAliver` owns one ``LeaseKeepAlive`` bidi stream per client
and keeps every live :class:`AsyncLease` of that client refreshed: each lease is refreshed
about every TTL/3 (etcd's Go client does the same). Every request's send time is queued per
lease; when its response arrives with TTL ``T`` the lease is known to live at least until
``send_time + T`` (the server refreshed it after we sent), which becomes the lease's
``deadline``.

A lease is *lost* when a response says TTL 0 (revoked or expired on the server) or when its
deadline passes without a confirmed refresh (e.g. the cluster is unreachable). Loss sets
``expired``, clears ``alive``, wakes :meth:`AsyncLease.wait` and calls the ``on_lost``
callbacks once. A revoke by its owner (``revoke()``, leaving ``async with``) ends the lease
without calling the callbacks. If the stream breaks, the keeper reconnects on the next endpoint
and re-sends keep-alives for every lease at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from grpclib.exceptions import GRPCError

from . import errors
from ._conn import TRANSPORT_ERRORS, Connection, status_error
from ._pb import etcdserverpb as pb

if TYPE_CHECKING:
    from .aio import AsyncClient

__all__ = ["AsyncLease", "KeepAliver", "LeaseGrant"]

log = logging.getLogger("coord.lease")

KEEPALIVE_PATH = "/etcdserverpb.Lease/LeaseKeepAlive"


class AsyncLease:
    """A granted lease, kept alive in the background until revoked, lost or the client closes.

    Attributes:
        id: the lease ID.
        granted_ttl: the TTL (seconds) the server granted.
        alive: False once the lease was lost, revoked or the client closed.
        expired: True once the lease was lost involuntarily (TTL 0 from the server, or no
            refresh could be confirmed before the deadline).
    """

    def __init__(
        self, client: AsyncClient, lease_id: int, granted_ttl: int, sent_at: float
    ) -> None:
        self._client = client
        self.id = lease_id
        self.granted_ttl = granted_ttl
        self.alive = True
        self.expired = False
        #: monotonic time until which the lease is known to live.
        self.deadline = sent_at + granted_ttl
        #: monotonic time of the next keep-alive.
        self.next_send = time.monotonic() + self.interval
        #: send times of keep-alives not yet answered, oldest first.
        self.sent: deque[float] = deque()
        self._callbacks: list[Callable[[AsyncLease], object]] = []
        self._ended = asyncio.Event()

    @property
    def interval(self) -> float:
        """Seconds between keep-alives (TTL/3, at least 0.2)."""
        return max(self.granted_ttl / 3.0, 0.2)

    def on_lost(self, callback: Callable[[AsyncLease], object]) -> None:
        """Call ``callback(lease)`` (on the event loop) when the lease is lost involuntarily.

        Called immediately when the lease is already lost.
        """
        if self.expired:
            callback(self)
        else:
            self._callbacks.append(callback)

    async def wait(self) -> None:
        """Return once the lease is no longer alive (lost, revoked or client closed)."""
        await self._ended.wait()

    async def ttl(self) -> int:
        """Remaining TTL in seconds according to the server (-1 if the lease is gone)."""
        return (await self._client.lease_time_to_live(self.id)).ttl

    async def keys(self) -> list[bytes]:
        """Keys currently attached to the lease."""
        return list((await self._client.lease_time_to_live(self.id, keys=True)).keys)

    async def revoke(self) -> None:
        """Revoke the lease (deleting its keys) and stop keeping it alive."""
        self._end(lost=False)
        await self._client.revoke_lease(self.id)

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._release()

    async def _release(self) -> None:
        try:
            await self.revoke()
        except errors.LeaseNotFoundError:
            pass

    def _end(self, lost: bool) -> None:
        if not self.alive:
            return
        self.alive = False
        self.expired = lost
        self._client._keepaliver.remove(self)
        self._ended.set()
        if lost:
            for cb in self._callbacks:
                try:
                    cb(self)
                except Exception:  # a user callback must not kill the keeper
                    log.exception("lease %x on_lost callback failed", self.id)
        self._callbacks.clear()

    def __repr__(self) -> str:
        state = "alive" if self.alive else ("expired" if self.expired else "ended")
        return f"<AsyncLease id={self.id:#x} ttl={self.granted_ttl} {state}>"


class LeaseGrant:
    """``client.lease(ttl)``: await it for an :class:`AsyncLease`, or use ``async with``."""

    def __init__(
        self,
        client: AsyncClient,
        ttl: int,
        lease_id: int,
        on_lost: Callable[[AsyncLease], object] | None,
    ) -> None:
        self._client = client
        self._args = (ttl, lease_id, on_lost)
        self._lease: AsyncLease | None = None

    def __await__(self) -> Generator[Any, None, AsyncLease]:
        return self._client._grant(*self._args).__await__()

    async def __aenter__(self) -> AsyncLease:
        self._lease = await self._client._grant(*self._args)
        return self._lease

    async def __aexit__(self, *exc: object) -> None:
        if self._lease is not None:
            await self._lease._release()


class KeepAliver:
    """Keeps a client's leases alive over one LeaseKeepAlive stream (see module docstring)."""

    def __init__(
        self, conn: Connection, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    ) -> None:
        self._conn = conn
        self._spawn = spawn
        self._leases: dict[int, AsyncLease] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: True while no lease needs keeping alive (no stream open); observable by tests.
        self.idle = True
        #: number of keep-alive streams opened.
        self.streams_opened = 0

    def _check(self) -> None:
        assert all(lease.alive and lease.id == i for i, lease in self._leases.items())

    def add(self, lease: AsyncLease) -> None:
        """Start keeping ``lease`` alive."""
        self._leases[lease.id] = lease
        if self._task is None:
            self._task = self._spawn(self._run())
        self._wake.set()

    def remove(self, lease: AsyncLease) -> None:
        """Stop keeping ``lease`` alive."""
        self._leases.pop(lease.id, None)
        self._wake.set()

    def close(self) -> None:
        """End every lease (not lost: the client is closing)."""
        for lease in list(self._leases.values()):
            lease._end(lost=False)

    def _expire_overdue(self) -> None:
        now = time.monotonic()
        for lease in list(self._leases.values()):
            if now >= lease.deadline:
                log.warning("lease %x lost: no confirmed keep-alive before its deadline", lease.id)
                lease._end(lost=True)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._leases:
                self.idle = True
                self._wake.clear()
                await self._wake.wait()
                continue
            self.idle = False
            token = None
            try:
                await self._conn.metadata()
                token = self._conn.token  # the token this stream is opened with
                async with self._conn.open_stream(
                    KEEPALIVE_PATH, pb.LeaseKeepAliveResponse.parse, {"hasleader": "true"}
                ) as (_, stream):
                    self.streams_opened += 1
                    backoff = 0.05
                    for lease in self._leases.values():
                        lease.sent.clear()
                        lease.next_send = 0.0  # refresh everything at once on a new stream
                    reader = asyncio.ensure_future(self._read(stream))
                    try:
                        await self._send_loop(stream, reader)
                    finally:
                        reader.cancel()
            except asyncio.CancelledError:
                raise
            except GRPCError as e:
                err = status_error(e)
                log.info("lease keep-alive stream failed: %r", err)
                if isinstance(err, errors.InvalidAuthTokenError):
                    try:
                        await self._conn.authenticate(stale=token)
                    except Exception as e2:  # retried on the next attempt
                        log.info("lease re-authentication failed: %r", e2)
            except TRANSPORT_ERRORS as e:
                log.info("lease keep-alive stream broke: %r", e)
            except errors.CoordError as e:  # e.g. no endpoint reachable to authenticate
                log.info("lease keep-alive stream could not be opened: %r", e)
            except Exception:
                log.exception("lease keep-alive stream failed")
            self._expire_overdue()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    async def _send_loop(self, stream: Any, reader: asyncio.Future[None]) -> None:
        while True:
            self._expire_overdue()
            if not self._leases:
                return
            now = time.monotonic()
            for lease in list(self._leases.values()):
                if lease.next_send <= now:
                    lease.sent.append(now)
                    lease.next_send = now + lease.interval
                    await stream.send_message(pb.LeaseKeepAliveRequest(id=lease.id))
            nxt = min(min(lease.next_send, lease.deadline) for lease in self._leases.values())
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                aws: set[asyncio.Future[Any]] = {reader, waiter}
                done, _ = await asyncio.wait(
                    aws, timeout=max(nxt - now, 0.0), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
            if reader in done:
                reader.result()
                raise EOFError("keep-alive stream ended")

    async def _read(self, stream: Any) -> None:
        while True:
            resp = await stream.recv_message()
            if resp is None:
                return
            lease = self._leases.get(resp.id)
            if lease is None:
                continue
            sent_at = lease.sent.popleft() if lease.sent else time.monotonic()
            if resp.ttl <= 0:
                log.warning("lease %x lost: the server says it no longer exists", lease.id)
                lease._end(lost=True)
            else:
                lease.deadline = max(lease.deadline, sent_at + resp.ttl)
