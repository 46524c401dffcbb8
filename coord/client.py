"""The synchronous client: :class:`Client`, a thin facade over :class:`~coord.aio.AsyncClient`.

Theory of operation. A ``Client`` starts a private event-loop thread (anyio's blocking portal)
and an ``AsyncClient`` inside it; every method forwards to an async method and blocks the
calling thread until it finishes. There is exactly one implementation of every RPC and
behaviour (failover, retries, watch resume, keep-alive): the async one.

Two ways to run a call, same code, same results:

* Unary calls (put, get, txn, ...) run on the calling thread itself: the ``AsyncClient``
  method runs on a blocking twin (:meth:`AsyncClient._blocking_twin`) whose transport,
  :class:`~coord._conn.SyncConnection`, speaks HTTP/2 on plain blocking sockets
  (:mod:`coord._h2`) and never suspends, so :func:`~coord._conn.run_sync` drives it to its
  end without an event loop. Each concurrently calling thread gets a pooled connection of its
  own and waits in ``recv`` with the GIL released. The failover, retry and auth rules are the
  same code as the async path's (:class:`~coord._conn._Caller`); endpoint and token are
  shared. This avoids both grpclib's per-call cost and handing each call to the loop thread
  and back (two thread wake-ups, ~200 us of CPU per call on a 2-core host).
* Everything else goes to the loop thread: watches, leases and their keep-alives,
  :meth:`Client.call` (and so the sync recipes), and unary calls beyond ``LANES`` concurrent
  ones (they share the loop's one connection).

Any number of threads may use one ``Client``. A blocking watch iteration only parks the calling
thread (the loop keeps serving other calls) and can be ended from any thread with
:meth:`Watch.close`. Callbacks registered with ``on_lost`` run on the loop thread: keep them
short and never call the blocking client from them (use a thread or an event instead).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import inspect
import ssl as _ssl
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, Literal, TypeVar, overload

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._conn import run_sync
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

#: Unary calls that may run on their calling threads at once (each on its own connection);
#: more concurrent ones share the loop thread's connection.
LANES = 16


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

    def __init__(
        self,
        endpoints: str | Sequence[str] = "127.0.0.1:2379",
        *,
        timeout: float | None = 30.0,
        ca_cert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        user: str | None = None,
        password: str | None = None,
        keepalive: float | None = 10.0,
        connect_timeout: float | None = 2.0,
    ) -> None:
        self._stack = contextlib.ExitStack()
        self.portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())
        try:

            async def make() -> AsyncClient:
                return AsyncClient(
                    endpoints,
                    timeout=timeout,
                    ca_cert=ca_cert,
                    cert=cert,
                    key=key,
                    ssl=ssl,
                    user=user,
                    password=password,
                    keepalive=keepalive,
                    connect_timeout=connect_timeout,
                )

            #: the AsyncClient every call is forwarded to (runs on ``portal``'s loop).
            self.async_client: AsyncClient = self.portal.call(make)
            self._loop: asyncio.AbstractEventLoop = self.portal.call(asyncio.get_running_loop)
            self._loop_thread: int = self.portal.call(threading.get_ident)
        except BaseException:
            self._stack.close()
            raise
        self._inbox: collections.deque[Callable[[], object]] = collections.deque()
        self._drain_scheduled = False
        self._lanes = threading.BoundedSemaphore(LANES)  # unary calls on calling threads
        self._lane_client = self.async_client._blocking_twin()
        _LIVE.add(self)

    _closed = False

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the client's event-loop thread and return its result.

        The public hook for code that extends the blocking client with async code (the sync
        recipes use it): ``fn`` may be a coroutine function (awaited on the loop, e.g. a
        method of :attr:`async_client`) or a plain function. Exceptions propagate. Must not be
        called from the loop thread itself (e.g. inside an ``on_lost`` callback): that raises
        ``RuntimeError`` instead of deadlocking.

        Coroutine functions run as a task posted to the loop (:meth:`_hop`, cheaper than the
        portal's task-group machinery) and are cancelled if the wait is interrupted; plain
        functions go through the portal.
        """
        if self._closed:
            raise ConnectionFailedError("coord: client is closed")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "the blocking coord.Client was called from its own event-loop "
                "thread (e.g. inside an on_lost callback), which would deadlock;"
                " hand the work to another thread or use the AsyncClient"
            )
        if inspect.iscoroutinefunction(fn):
            return self._hop(fn(*args, **kwargs))
        if kwargs:
            fn = functools.partial(fn, **kwargs)
        return self.portal.call(fn, *args)

    def _hop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and wait for it (cancelled if the wait is
        interrupted, e.g. by Ctrl-C). A lock per call and the inbox: measured ~20 us of CPU
        cheaper per call than ``run_coroutine_threadsafe``'s future chaining."""
        done = threading.Lock()
        done.acquire()
        task: list[asyncio.Task[T]] = []
        interrupted = False

        def start() -> None:
            if interrupted:
                coro.close()
                return
            task.append(self._loop.create_task(coro))
            task[0].add_done_callback(lambda _: done.release())

        self._post(start)
        try:
            done.acquire()
        except BaseException:
            interrupted = True
            self._post(lambda: task and task[0].cancel())
            raise
        return task[0].result()

    def _post(self, fn: Callable[[], object]) -> None:
        """Have the loop thread run ``fn``, in order of posting.

        Posts made while a drain is already scheduled ride along with it, saving a wake-up
        write per call when threads call concurrently. Correct without a lock because
        :meth:`_drain` clears the flag *before* it empties the inbox: a post that saw the flag
        set lands in the inbox before that drain pops.
        """
        self._inbox.append(fn)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        inbox = self._inbox
        while inbox:
            inbox.popleft()()

    def _run(self, method: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        """Run the unary ``AsyncClient`` method ``method`` (unbound) on the calling thread, or
        on the loop thread when ``LANES`` threads already do (see the module docstring)."""
        if self._closed:
            raise ConnectionFailedError("coord: client is closed")
        if threading.get_ident() != self._loop_thread and self._lanes.acquire(blocking=False):
            try:
                return run_sync(method(self._lane_client, *args, **kwargs))
            finally:
                self._lanes.release()
        return self.call(method, self.async_client, *args, **kwargs)  # type: ignore[no-any-return]

    _call = call  # the former private name

    def close(self) -> None:
        """Stop watches and keep-alives, close connections and the loop thread."""
        if self._closed:
            return
        try:
            if threading.get_ident() != self._loop_thread:
                asyncio.run_coroutine_threadsafe(self.async_client.aclose(), self._loop).result(
                    timeout=10
                )
        finally:
            self._closed = True
            self._stack.close()
            self._lane_client._calls.close()

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
    def put(
        self, key: KeyLike, value: KeyLike, *, lease: object = None, prev_kv: Literal[False] = False
    ) -> int: ...

    @overload
    def put(
        self, key: KeyLike, value: KeyLike, *, lease: object = None, prev_kv: Literal[True]
    ) -> tuple[int, KeyValue | None]: ...

    def put(
        self, key: KeyLike, value: KeyLike, *, lease: object = None, prev_kv: bool = False
    ) -> int | tuple[int, KeyValue | None]:
        """Set ``key``; return the new revision (``(revision, prev KeyValue)`` with prev_kv)."""
        if lease is not None and not isinstance(lease, int):
            lease = int(lease.id)  # type: ignore[attr-defined]
        return self._run(AsyncClient.put, key, value, lease=lease, prev_kv=prev_kv)

    def get(
        self, key: KeyLike, *, revision: int = 0, serializable: bool = False
    ) -> KeyValue | None:
        """The KeyValue at ``key`` (at ``revision`` if given), or None."""
        return self._run(AsyncClient.get, key, revision=revision, serializable=serializable)

    def get_prefix(self, prefix: KeyLike, **options: Any) -> list[KeyValue]:
        """Every key starting with ``prefix``, sorted by key."""
        return self._run(AsyncClient.get_prefix, prefix, **options)

    def get_all(self, **options: Any) -> list[KeyValue]:
        """Every key in the store."""
        return self._run(AsyncClient.get_all, **options)

    def range(
        self,
        key: KeyLike,
        range_end: KeyLike | None = None,
        *,
        prefix: bool = False,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
        sort: str | None = None,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeResult:
        """Read a range with every etcd Range option (see :meth:`AsyncClient.range`)."""
        return self._run(
            AsyncClient.range,
            key,
            range_end,
            prefix=prefix,
            limit=limit,
            revision=revision,
            keys_only=keys_only,
            count_only=count_only,
            serializable=serializable,
            sort=sort,
            min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
        )

    @overload
    def delete(self, key: KeyLike, *, prev_kv: Literal[False] = False) -> int: ...

    @overload
    def delete(self, key: KeyLike, *, prev_kv: Literal[True]) -> list[KeyValue]: ...

    def delete(self, key: KeyLike, *, prev_kv: bool = False) -> int | list[KeyValue]:
        """Delete ``key``; return the count (the deleted kvs with prev_kv)."""
        return self._run(AsyncClient.delete, key, prev_kv=prev_kv)

    @overload
    def delete_prefix(self, prefix: KeyLike, *, prev_kv: Literal[False] = False) -> int: ...

    @overload
    def delete_prefix(self, prefix: KeyLike, *, prev_kv: Literal[True]) -> list[KeyValue]: ...

    def delete_prefix(self, prefix: KeyLike, *, prev_kv: bool = False) -> int | list[KeyValue]:
        """Delete every key starting with ``prefix``; return the count (kvs with prev_kv)."""
        return self._run(AsyncClient.delete_prefix, prefix, prev_kv=prev_kv)

    def delete_range(
        self, key: KeyLike, range_end: KeyLike, *, prev_kv: bool = False
    ) -> int | list[KeyValue]:
        """Delete ``[key, range_end)``; return the count (kvs with prev_kv)."""
        return self._run(AsyncClient.delete_range, key, range_end, prev_kv=prev_kv)

    def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Run a transaction; see :meth:`AsyncClient.txn`."""
        return self._run(AsyncClient.txn, compare, success, failure)

    def compact(self, revision: int, *, physical: bool = False) -> None:
        """Compact the store's history up to ``revision``."""
        self._run(AsyncClient.compact, revision, physical=physical)

    # --------------------------------------------------------------------------------- lease

    def lease(
        self, ttl: int, *, id: int = 0, on_lost: Callable[[Lease], object] | None = None
    ) -> Lease:
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
        self._run(AsyncClient.revoke_lease, _lease_arg(lease))

    def lease_time_to_live(self, lease: object, *, keys: bool = False) -> LeaseInfo:
        """Remaining TTL of a lease (``ttl`` -1 when it does not exist)."""
        return self._run(AsyncClient.lease_time_to_live, _lease_arg(lease), keys=keys)

    def leases(self) -> list[int]:
        """IDs of every lease in the cluster."""
        return self._run(AsyncClient.leases)

    # --------------------------------------------------------------------------------- watch

    def watch(
        self,
        key: KeyLike,
        range_end: KeyLike | None = None,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
        progress_notify: bool = False,
    ) -> Watch:
        """Watch a key, range or prefix; returns once the server created the watch.

        Options as :meth:`AsyncClient.watch`. Iterate the result for events; close it (from
        any thread) to stop.
        """

        async def start() -> AsyncWatch:
            return await self.async_client.watch(
                key,
                range_end,
                prefix=prefix,
                start_revision=start_revision,
                prev_kv=prev_kv,
                no_put=no_put,
                no_delete=no_delete,
                progress_notify=progress_notify,
            )

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
        return self._run(AsyncClient.status)

    def members(self) -> list[Member]:
        """The cluster's members."""
        return self._run(AsyncClient.members)

    def hash_kv(self, revision: int = 0) -> HashKV:
        """Hash of the KV store up to ``revision`` (0: latest)."""
        return self._run(AsyncClient.hash_kv, revision)


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
