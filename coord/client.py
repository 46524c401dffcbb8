"""The synchronous client: :class:`Client`, a thin facade over :class:`~coord.aio.AsyncClient`.

Theory of operation. A ``Client`` starts a private event-loop thread (anyio's blocking portal)
and an ``AsyncClient`` inside it; every method forwards to the async method through the portal
and blocks the calling thread until it finishes. There is exactly one implementation of every
behaviour (failover, retries, watch resume, keep-alive): the async one.

Any number of threads may use one ``Client``. A blocking watch iteration only parks the calling
thread (the loop keeps serving other calls) and can be ended from any thread with
:meth:`Watch.close`. Callbacks registered with ``on_lost`` run on the loop thread: keep them
short and never call the blocking client from them (use a thread or an event instead).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import ssl as _ssl
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar, overload

from anyio.from_thread import BlockingPortal, start_blocking_portal

from .aio import AsyncClient
from .errors import ConnectionFailedError
from .lease import AsyncLease
from .txn import Compare, KeyLike, Op
from .types import (
    Event,
    HashKV,
    KeyValue,
    LeaseInfo,
    Member,
    RangeResult,
    ServerStatus,
    TxnResult,
    WatchResponse,
)
from .watch import AsyncWatch

__all__ = ["Client", "Lease", "Watch"]

T = TypeVar("T")


class Lease:
    """A lease kept alive in the background (sync view of :class:`~coord.lease.AsyncLease`).

    Use as ``with client.lease(10) as lease:`` to revoke it on exit.

    Attributes:
        id: the lease ID.
        granted_ttl: the TTL the server granted.
    """

    def __init__(self, client: Client, alease: AsyncLease) -> None:
        self._client = client
        self.async_lease = alease
        self.id = alease.id
        self.granted_ttl = alease.granted_ttl

    @property
    def alive(self) -> bool:
        """False once the lease was lost, revoked or the client closed."""
        return self.async_lease.alive

    @property
    def expired(self) -> bool:
        """True once the lease was lost involuntarily (expired or revoked by someone else)."""
        return self.async_lease.expired

    def ttl(self) -> int:
        """Remaining TTL in seconds according to the server (-1 if the lease is gone)."""
        return self._client.call(self.async_lease.ttl)  # type: ignore[no-any-return]

    def keys(self) -> list[bytes]:
        """Keys attached to the lease."""
        return self._client.call(self.async_lease.keys)  # type: ignore[no-any-return]

    def revoke(self) -> None:
        """Revoke the lease (deleting its keys) and stop keeping it alive."""
        self._client.call(self.async_lease.revoke)

    def on_lost(self, callback: Callable[[Lease], object]) -> None:
        """Call ``callback(lease)`` (on the client's loop thread) if the lease is lost."""
        self._client.call(self.async_lease.on_lost, lambda _: callback(self))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the lease is no longer alive; False if ``timeout`` passed first."""
        async def waiter() -> bool:
            try:
                await asyncio.wait_for(self.async_lease.wait(), timeout)
            except TimeoutError:
                return False
            return True
        return self._client.call(waiter)  # type: ignore[no-any-return]

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.call(self.async_lease._release)

    def __repr__(self) -> str:
        return repr(self.async_lease).replace("AsyncLease", "Lease")


class Watch:
    """A blocking watch iterator (sync view of :class:`~coord.watch.AsyncWatch`).

    ``for event in watch`` yields :class:`~coord.types.Event`; :meth:`responses` yields whole
    batches including progress notifications. :meth:`close` (from any thread) ends the
    iteration. Also a context manager (closed on exit).
    """

    def __init__(self, client: Client, awatch: AsyncWatch) -> None:
        self._client = client
        self.async_watch = awatch

    @property
    def revision(self) -> int:
        """Revision up to which every event has been delivered/queued."""
        return self.async_watch.revision

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            return self._client.call(self.async_watch.__anext__)  # type: ignore[no-any-return]
        except StopAsyncIteration:
            raise StopIteration from None

    def next_response(self, timeout: float | None = None) -> WatchResponse | None:
        """The next batch, or None if ``timeout`` passed first.

        Raises StopIteration when the watch is closed.
        """
        async def get() -> WatchResponse | None:
            try:
                return await asyncio.wait_for(self.async_watch.next_response(), timeout)
            except TimeoutError:
                return None
        try:
            return self._client.call(get)  # type: ignore[no-any-return]
        except StopAsyncIteration:
            raise StopIteration from None

    def responses(self) -> Iterator[WatchResponse]:
        """Iterate whole batches (events of complete revisions, or progress notifications)."""
        while True:
            try:
                resp = self.next_response()
            except StopIteration:
                return
            if resp is not None:
                yield resp

    def cancel(self) -> None:
        """Stop the watch (safe from any thread); a blocked iteration then ends."""
        with contextlib.suppress(RuntimeError, ConnectionFailedError):  # client closed
            self._client.call(self.async_watch.cancel)

    close = cancel

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class Client:
    """A blocking client for coord-server and etcd v3 (same arguments as AsyncClient).

    ``with Client("127.0.0.1:2379") as client: client.put("/k", "v")``. Thread-safe.
    """

    def __init__(self, endpoints: str | Sequence[str] = "127.0.0.1:2379", *,
                 timeout: float | None = 30.0, ca_cert: str | None = None,
                 cert: str | None = None, key: str | None = None,
                 ssl: _ssl.SSLContext | None = None, user: str | None = None,
                 password: str | None = None, keepalive: float | None = 10.0) -> None:
        self._stack = contextlib.ExitStack()
        self.portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())
        try:
            async def make() -> AsyncClient:
                return AsyncClient(endpoints, timeout=timeout, ca_cert=ca_cert, cert=cert,
                                   key=key, ssl=ssl, user=user, password=password,
                                   keepalive=keepalive)
            #: the AsyncClient every call is forwarded to (runs on ``portal``'s loop).
            self.async_client: AsyncClient = self.portal.call(make)
            self._loop: asyncio.AbstractEventLoop = self.portal.call(asyncio.get_running_loop)
            self._loop_thread: int = self.portal.call(threading.get_ident)
        except BaseException:
            self._stack.close()
            raise
        _LIVE.add(self)

    _closed = False

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the client's event-loop thread and return its result.

        The public hook for code that extends the blocking client with async code (the sync
        recipes use it): ``fn`` may be a coroutine function (awaited on the loop, e.g. a
        method of :attr:`async_client`) or a plain function. Exceptions propagate. Must not be
        called from the loop thread itself (e.g. inside an ``on_lost`` callback): that raises
        ``RuntimeError`` instead of deadlocking.

        Coroutine functions go through ``asyncio.run_coroutine_threadsafe`` (measured ~50 us
        per call cheaper than the portal's task-group machinery); plain functions through the
        portal.
        """
        if self._closed:
            raise ConnectionFailedError("coord: client is closed")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("the blocking coord.Client was called from its own event-loop "
                               "thread (e.g. inside an on_lost callback), which would deadlock;"
                               " hand the work to another thread or use the AsyncClient")
        if inspect.iscoroutinefunction(fn):
            return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self._loop).result()
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        return self.portal.call(fn, *args)

    _call = call  # the former private name

    def close(self) -> None:
        """Stop watches and keep-alives, close connections and the loop thread."""
        if self._closed:
            return
        try:
            if threading.get_ident() != self._loop_thread:
                asyncio.run_coroutine_threadsafe(self.async_client.aclose(),
                                                 self._loop).result(timeout=10)
        finally:
            self._closed = True
            self._stack.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def endpoints(self) -> list[str]:
        """The endpoints, as ``host:port``."""
        return self.async_client.endpoints

    @property
    def current_endpoint(self) -> str:
        """The endpoint new calls currently go to."""
        return self.async_client.current_endpoint

    # ------------------------------------------------------------------------------------ KV

    @overload
    def put(self, key: KeyLike, value: KeyLike, *, lease: object = None,
            prev_kv: Literal[False] = False) -> int: ...

    @overload
    def put(self, key: KeyLike, value: KeyLike, *, lease: object = None,
            prev_kv: Literal[True]) -> tuple[int, KeyValue | None]: ...

    def put(self, key: KeyLike, value: KeyLike, *, lease: object = None,
            prev_kv: bool = False) -> int | tuple[int, KeyValue | None]:
        """Set ``key``; return the new revision (``(revision, prev KeyValue)`` with prev_kv)."""
        if lease is not None and not isinstance(lease, int):
            lease = int(lease.id)  # type: ignore[attr-defined]
        return self._call(self.async_client.put, key, value, lease=lease,  # type: ignore[no-any-return]
                          prev_kv=prev_kv)

    def get(self, key: KeyLike, *, revision: int = 0,
            serializable: bool = False) -> KeyValue | None:
        """The KeyValue at ``key`` (at ``revision`` if given), or None."""
        return self._call(self.async_client.get, key, revision=revision,  # type: ignore[no-any-return]
                          serializable=serializable)

    def get_prefix(self, prefix: KeyLike, **options: Any) -> list[KeyValue]:
        """Every key starting with ``prefix``, sorted by key."""
        return self._call(self.async_client.get_prefix, prefix, **options)  # type: ignore[no-any-return]

    def get_all(self, **options: Any) -> list[KeyValue]:
        """Every key in the store."""
        return self._call(self.async_client.get_all, **options)  # type: ignore[no-any-return]

    def range(self, key: KeyLike, range_end: KeyLike | None = None, *,
              prefix: bool = False, limit: int = 0, revision: int = 0,
              keys_only: bool = False, count_only: bool = False,
              serializable: bool = False, sort: str | None = None,
              min_mod_revision: int = 0, max_mod_revision: int = 0,
              min_create_revision: int = 0, max_create_revision: int = 0) -> RangeResult:
        """Read a range with every etcd Range option (see :meth:`AsyncClient.range`)."""
        return self._call(  # type: ignore[no-any-return]
            self.async_client.range, key, range_end, prefix=prefix, limit=limit,
            revision=revision, keys_only=keys_only, count_only=count_only,
            serializable=serializable, sort=sort, min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision, min_create_revision=min_create_revision,
            max_create_revision=max_create_revision)

    @overload
    def delete(self, key: KeyLike, *, prev_kv: Literal[False] = False) -> int: ...

    @overload
    def delete(self, key: KeyLike, *, prev_kv: Literal[True]) -> list[KeyValue]: ...

    def delete(self, key: KeyLike, *, prev_kv: bool = False) -> int | list[KeyValue]:
        """Delete ``key``; return the count (the deleted kvs with prev_kv)."""
        return self._call(self.async_client.delete, key, prev_kv=prev_kv)  # type: ignore[no-any-return]

    @overload
    def delete_prefix(self, prefix: KeyLike, *, prev_kv: Literal[False] = False) -> int: ...

    @overload
    def delete_prefix(self, prefix: KeyLike, *, prev_kv: Literal[True]) -> list[KeyValue]: ...

    def delete_prefix(self, prefix: KeyLike, *, prev_kv: bool = False) -> int | list[KeyValue]:
        """Delete every key starting with ``prefix``; return the count (kvs with prev_kv)."""
        return self._call(self.async_client.delete_prefix, prefix, prev_kv=prev_kv)  # type: ignore[no-any-return]

    def delete_range(self, key: KeyLike, range_end: KeyLike, *,
                     prev_kv: bool = False) -> int | list[KeyValue]:
        """Delete ``[key, range_end)``; return the count (kvs with prev_kv)."""
        return self._call(self.async_client.delete_range, key, range_end,  # type: ignore[no-any-return]
                          prev_kv=prev_kv)

    def txn(self, compare: Sequence[Compare] = (), success: Sequence[Op] = (),
            failure: Sequence[Op] = ()) -> TxnResult:
        """Run a transaction; see :meth:`AsyncClient.txn`."""
        return self._call(self.async_client.txn, compare, success, failure)  # type: ignore[no-any-return]

    def compact(self, revision: int, *, physical: bool = False) -> None:
        """Compact the store's history up to ``revision``."""
        self._call(self.async_client.compact, revision, physical=physical)

    # --------------------------------------------------------------------------------- lease

    def lease(self, ttl: int, *, id: int = 0,
              on_lost: Callable[[Lease], object] | None = None) -> Lease:
        """Grant a lease kept alive in the background until revoked or the client closes.

        ``on_lost(lease)`` is called (on the loop thread) if it is lost involuntarily.
        """
        async def grant() -> AsyncLease:
            return await self.async_client.lease(ttl, id=id)
        lease = Lease(self, self._call(grant))
        if on_lost is not None:
            lease.on_lost(on_lost)
        return lease

    def revoke_lease(self, lease: object) -> None:
        """Revoke a lease (object or ID)."""
        self._call(self.async_client.revoke_lease, _lease_arg(lease))

    def lease_time_to_live(self, lease: object, *, keys: bool = False) -> LeaseInfo:
        """Remaining TTL of a lease (``ttl`` -1 when it does not exist)."""
        return self._call(self.async_client.lease_time_to_live, _lease_arg(lease),  # type: ignore[no-any-return]
                          keys=keys)

    def leases(self) -> list[int]:
        """IDs of every lease in the cluster."""
        return self._call(self.async_client.leases)  # type: ignore[no-any-return]

    # --------------------------------------------------------------------------------- watch

    def watch(self, key: KeyLike, range_end: KeyLike | None = None, *, prefix: bool = False,
              start_revision: int = 0, prev_kv: bool = False, no_put: bool = False,
              no_delete: bool = False, progress_notify: bool = False) -> Watch:
        """Watch a key, range or prefix; returns once the server created the watch.

        Options as :meth:`AsyncClient.watch`. Iterate the result for events; close it (from
        any thread) to stop.
        """
        async def start() -> AsyncWatch:
            return await self.async_client.watch(
                key, range_end, prefix=prefix, start_revision=start_revision, prev_kv=prev_kv,
                no_put=no_put, no_delete=no_delete, progress_notify=progress_notify)
        return Watch(self, self._call(start))

    def watch_prefix(self, prefix: KeyLike, **options: Any) -> Watch:
        """``watch(prefix, prefix=True, ...)``."""
        return self.watch(prefix, prefix=True, **options)

    def request_progress(self) -> None:
        """Ask the server for a progress notification for every open watch."""
        self._call(self.async_client.request_progress)

    # --------------------------------------------------------------------- cluster/maintenance

    def status(self) -> ServerStatus:
        """Status of the current endpoint's member."""
        return self._call(self.async_client.status)  # type: ignore[no-any-return]

    def members(self) -> list[Member]:
        """The cluster's members."""
        return self._call(self.async_client.members)  # type: ignore[no-any-return]

    def hash_kv(self, revision: int = 0) -> HashKV:
        """Hash of the KV store up to ``revision`` (0: latest)."""
        return self._call(self.async_client.hash_kv, revision)  # type: ignore[no-any-return]


_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_live_clients() -> None:
    """Close clients the program forgot to close, while their loop threads still run.

    (Without this, interpreter shutdown would wait forever on a loop thread it has frozen.)
    """
    for client in list(_LIVE):
        with contextlib.suppress(Exception):
            client.close()


def _lease_arg(lease: object) -> object:
    if isinstance(lease, Lease):
        return lease.id
    return lease
