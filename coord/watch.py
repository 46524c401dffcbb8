"""Watches multiplexed over one Watch stream per client, resumed exactly after failover.

Theory of operation. :class:`WatchMux` owns one bidi ``Watch`` stream (on the connection's
current endpoint) and every :class:`AsyncWatch` of the client. Like etcd's Go client it sends
one ``WatchCreateRequest`` at a time and gives each ``created`` response to the watch whose
create is in flight; events are then routed by ``watch_id``.

Each watch remembers ``next_rev``: the first revision it has not fully seen. It starts at
``start_revision`` (or, for "from now", at the created response's header revision + 1) and
after every event batch becomes the last event's revision + 1 (etcd never splits a revision
across responses unless asked to fragment, which fragments are reassembled here). A progress
notification addressed to the watch moves it to the notified revision + 1. When the stream
breaks (member killed, connection reset, UNAVAILABLE / no leader), the mux rotates to the next
endpoint, opens a new stream and re-creates every open watch from its ``next_rev``: no event is
lost (all revisions >= next_rev are replayed) and none is duplicated (all < next_rev were
delivered completely). A resume point that has been compacted meanwhile surfaces as
:class:`~coord.errors.CompactedError` carrying ``compact_revision``, never as silent loss.

Stream-wide progress responses (``watch_id`` -1, the answer to :meth:`WatchMux.request_progress`)
are passed to every watch as progress notifications but do not move ``next_rev``: etcd 3.4
sends them on a control path that can overtake a catching-up watcher's events.

Closing a watch sends a ``WatchCancelRequest``. Delivered batches are buffered per watch (the
stream is shared, so one slow consumer must not stall the others), but at most
``max_buffered`` of them: when a consumer falls that far behind, the mux *pauses* its watch
(cancels it on the server and drops whatever the server still sends for it) and, once the
consumer has drained half the buffer, re-creates it from ``next_rev`` exactly like a failover
resume. Nothing is lost or repeated (``next_rev`` only moves past completely buffered
batches), and the other watches on the stream are never held up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any

from grpclib.exceptions import GRPCError

from . import errors
from ._conn import TRANSPORT_ERRORS, Connection, status_error
from ._kvcodec import RawWatchResponse, decode_watch
from ._pb import etcdserverpb as pb
from .types import Event, WatchResponse

__all__ = ["AsyncWatch", "WatchMux"]

log = logging.getLogger("coord.watch")

WATCH_PATH = "/etcdserverpb.Watch/Watch"

_CLOSED = object()

#: default bound on a watch's buffered responses (AsyncWatch.max_buffered).
MAX_BUFFERED = 1024


def reason_message(reason: str) -> str:
    """The etcd message inside a cancel reason (etcd 3.4 sends a whole gRPC error string:
    ``rpc error: code = Unauthenticated desc = etcdserver: invalid auth token``)."""
    head, sep, desc = reason.partition(" desc = ")
    return desc if sep and head.startswith("rpc error: code = ") else reason


def is_auth_expired(reason: str) -> bool:
    """True when a cancel reason means the auth token must be refreshed."""
    return reason_message(reason) == errors.InvalidAuthTokenError.default_message


def cancel_error(reason: str, compact_revision: int) -> errors.CoordError:
    """The error for a watch the server canceled."""
    reason = reason_message(reason)
    if compact_revision:
        return errors.CompactedError(compact_revision=compact_revision)
    if not reason:
        return errors.WatchCanceledError()
    err = errors.from_status(errors.Status.CANCELLED, reason)
    if type(err) is errors.CoordError:
        return errors.WatchCanceledError(reason)
    return err


class AsyncWatch:
    """A watch on a key or range; iterate it (``async for event in watch``) for events.

    Use it as ``async with client.watch(...) as w``, ``w = await client.watch(...)`` (both
    return once the server confirmed the watch) or iterate it directly (created on first
    iteration). :meth:`responses` iterates whole batches instead, including progress
    notifications. ``revision`` is the revision the watch is complete up to.
    """

    def __init__(
        self,
        mux: WatchMux,
        key: bytes,
        range_end: bytes,
        start_revision: int,
        prev_kv: bool,
        no_put: bool,
        no_delete: bool,
        progress_notify: bool,
    ) -> None:
        self._mux = mux
        self.key = key
        self.range_end = range_end
        self._prev_kv = prev_kv
        self._filters = [
            f
            for f, on in (
                (pb.WatchCreateRequestFilterType.NOPUT, no_put),
                (pb.WatchCreateRequestFilterType.NODELETE, no_delete),
            )
            if on
        ]
        self._progress_notify = progress_notify
        #: first revision not yet completely delivered (0: "from now", before created).
        self.next_rev = start_revision
        #: the server's ID for this watch on the current stream (None when not created).
        self.watch_id: int | None = None
        self._queue: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._created = asyncio.Event()
        self._error: BaseException | None = None
        self._events: deque[Event] = deque()
        self._fragments: list[Event] = []
        self._started = False
        self.closed = False
        #: bound on buffered responses; reaching it pauses the watch (see module docstring).
        self.max_buffered = MAX_BUFFERED
        #: True while paused because the consumer is behind (not created on the server).
        self.paused = False

    @property
    def revision(self) -> int:
        """The revision up to which every event of this watch has been delivered/queued."""
        return max(self.next_rev - 1, 0)

    def create_request(self) -> pb.WatchRequest:
        """The create request resuming at ``next_rev``."""
        return pb.WatchRequest(
            create_request=pb.WatchCreateRequest(
                key=self.key,
                range_end=self.range_end,
                start_revision=self.next_rev,
                progress_notify=self._progress_notify,
                filters=list(self._filters),
                prev_kv=self._prev_kv,
            )
        )

    async def start(self) -> AsyncWatch:
        """Register the watch and wait until the server has created it.

        Raises:
            ConnectionFailedError: no endpoint created it within the client's timeout (the
                watch is then cancelled).
        """
        if not self._started:
            self._started = True
            self._mux.add(self)
        timeout = self._mux.create_timeout
        try:
            await asyncio.wait_for(self._created.wait(), timeout)
        except TimeoutError:
            self.cancel()
            raise errors.ConnectionFailedError(
                f"coord: the watch on {self.key!r} was not created within {timeout}s"
                " (no endpoint reachable?)"
            ) from None
        if self._error is not None and not self._queue:
            raise self._error
        return self

    def __await__(self) -> Generator[Any, None, AsyncWatch]:
        return self.start().__await__()

    async def __aenter__(self) -> AsyncWatch:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> Event:
        while not self._events:
            resp = await self.next_response()
            self._events.extend(resp.events)
        return self._events.popleft()

    async def next_response(self) -> WatchResponse:
        """The next batch (events of complete revisions, or a progress notification).

        Raises StopAsyncIteration once closed, or the error that ended the watch
        (e.g. :class:`~coord.errors.CompactedError`).
        """
        if not self._started:
            await self.start()
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        item = self._queue.popleft()
        if self.paused and len(self._queue) <= self.max_buffered // 2 and not self.closed:
            self.paused = False
            self._mux.resume(self)
        if item is _CLOSED:
            self._queue.appendleft(item)
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._queue.appendleft(_CLOSED)
            raise item
        return item  # type: ignore[no-any-return]

    async def responses(self) -> AsyncIterator[WatchResponse]:
        """Iterate whole batches (with progress notifications) instead of single events."""
        while True:
            try:
                yield await self.next_response()
            except StopAsyncIteration:
                return

    def cancel(self) -> None:
        """Stop the watch: pending iteration ends, a WatchCancelRequest is sent."""
        if self.closed:
            return
        self.closed = True
        self._mux.remove(self)
        self._push(_CLOSED)
        self._created.set()

    async def aclose(self) -> None:
        """Same as :meth:`cancel` (async spelling)."""
        self.cancel()

    close = cancel

    # ---- called by the mux

    def _push(self, item: Any) -> None:
        self._queue.append(item)
        self._ready.set()
        if (
            len(self._queue) >= self.max_buffered
            and not self.paused
            and not self.closed
            and isinstance(item, WatchResponse)
        ):
            self.paused = True
            self._mux.pause(self)

    def _on_created(self, watch_id: int, header_revision: int) -> None:
        self.watch_id = watch_id
        if self.next_rev == 0:
            self.next_rev = header_revision + 1
        self._created.set()

    def _on_events(self, events: list[Event], fragment: bool) -> None:
        self._fragments.extend(events)
        if fragment:
            return
        batch, self._fragments = self._fragments, []
        self.next_rev = batch[-1].kv.mod_revision + 1
        self._push(WatchResponse(tuple(batch), batch[-1].kv.mod_revision))

    def _on_progress(self, revision: int, own: bool) -> None:
        if own and revision + 1 > self.next_rev:
            self.next_rev = revision + 1
        self._push(WatchResponse((), revision, progress=True))

    def _fail(self, err: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        self._error = err
        self._mux.remove(self)
        self._push(err)
        self._created.set()

    def __repr__(self) -> str:
        return (
            f"<AsyncWatch key={self.key!r} range_end={self.range_end!r}"
            f" next_rev={self.next_rev} id={self.watch_id}>"
        )


class _Reconnect(Exception):
    """Internal: drop the stream and open a new one (e.g. after re-authentication)."""


class WatchMux:
    """All watches of one client, multiplexed onto one Watch stream (see module docstring).

    Invariants (:meth:`_check`): every watch in ``_by_id`` and ``_inflight`` is in
    ``_watches``; a watch is in at most one of ``_to_create``, ``_inflight``, ``_by_id``.
    """

    def __init__(
        self, conn: Connection, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    ) -> None:
        self._conn = conn
        self._spawn = spawn
        self._watches: dict[AsyncWatch, None] = {}  # open watches, in creation order
        self._by_id: dict[int, AsyncWatch] = {}
        self._to_create: deque[AsyncWatch] = deque()
        self._inflight: AsyncWatch | None = None
        self._outbox: deque[pb.WatchRequest] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: number of streams opened (tests use it to observe reconnects).
        self.streams_opened = 0
        #: how long ``AsyncWatch.start`` waits for the server (the client's call timeout).
        self.create_timeout = conn.timeout

    def _check(self) -> None:
        ids = set(self._by_id.values())
        assert all(w in self._watches for w in ids)
        assert self._inflight is None or self._inflight not in ids
        assert not (set(self._to_create) & ids)

    def add(self, watch: AsyncWatch) -> None:
        """Register ``watch`` and have it created on the stream."""
        self._watches[watch] = None
        self._to_create.append(watch)
        if self._task is None:
            self._task = self._spawn(self._run())
        self._wake.set()

    def remove(self, watch: AsyncWatch) -> None:
        """Forget ``watch``; cancel it on the server if it has an ID there."""
        self._watches.pop(watch, None)
        self._withdraw(watch)

    def pause(self, watch: AsyncWatch) -> None:
        """Stop receiving for ``watch`` (its consumer is behind): cancel it on the server."""
        self._withdraw(watch)

    def _withdraw(self, watch: AsyncWatch) -> None:
        """Take ``watch`` off the create queue and cancel its server-side watch, if any."""
        with contextlib.suppress(ValueError):
            self._to_create.remove(watch)
        wid, watch.watch_id = watch.watch_id, None
        if wid is not None and self._by_id.get(wid) is watch:
            del self._by_id[wid]
            self._outbox.append(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=wid)))
            self._wake.set()

    def resume(self, watch: AsyncWatch) -> None:
        """Re-create a paused ``watch`` from its ``next_rev``."""
        if watch in self._watches and watch is not self._inflight:
            self._to_create.append(watch)
            self._wake.set()

    def request_progress(self) -> None:
        """Ask the server for a progress notification (delivered to every watch)."""
        self._outbox.append(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
        self._wake.set()

    def close(self) -> None:
        """Close every watch."""
        for w in list(self._watches):
            w.cancel()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._watches:
                self._wake.clear()
                await self._wake.wait()
                continue
            token = None
            try:
                await self._conn.metadata()
                token = self._conn.token  # the token this stream is opened with
                async with self._conn.open_stream(
                    WATCH_PATH, decode_watch, {"hasleader": "true"}
                ) as (_, stream):
                    self.streams_opened += 1
                    self._by_id.clear()
                    self._inflight = None
                    self._outbox.clear()
                    self._to_create = deque(w for w in self._watches if not w.paused)
                    for w in self._watches:
                        w.watch_id = None
                    reader = asyncio.ensure_future(self._read(stream))
                    try:
                        await self._write_loop(stream, reader)
                    finally:
                        reader.cancel()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except _Reconnect:
                await self._reauthenticate(token)
                backoff = 0.05
            except GRPCError as e:
                err = status_error(e)
                log.info("watch stream failed: %r", err)
                if isinstance(err, errors.InvalidAuthTokenError):
                    await self._reauthenticate(token)
                elif isinstance(err, errors.UnavailableError):
                    self._rotate_current()
                elif not isinstance(err, errors.WatchCanceledError):
                    for w in list(self._watches):
                        w._fail(err)
            except TRANSPORT_ERRORS as e:
                log.info("watch stream broke: %r", e)
            except errors.AuthFailedError as e:  # credentials rejected: nothing to retry
                for w in list(self._watches):
                    w._fail(e)
            except errors.CoordError as e:  # e.g. no endpoint reachable to authenticate
                log.info("watch stream could not be opened: %r", e)
            except Exception:
                log.exception("watch stream failed")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _reauthenticate(self, stale: str | None) -> None:
        try:
            await self._conn.authenticate(stale=stale)
        except errors.AuthFailedError as e:  # credentials no longer valid: give up
            for w in list(self._watches):
                w._fail(e)
        except Exception as e:  # transport trouble: the next attempt retries
            log.info("watch re-authentication failed: %r", e)

    def _rotate_current(self) -> None:
        self._conn.rotate(self._conn.current, broken=False)

    async def _write_loop(self, stream: Any, reader: asyncio.Future[None]) -> None:
        while True:
            while self._outbox:
                await stream.send_message(self._outbox.popleft())
            if self._inflight is None and self._to_create:
                w = self._to_create.popleft()
                self._inflight = w
                await stream.send_message(w.create_request())
                continue
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                aws: set[asyncio.Future[Any]] = {reader, waiter}
                done, _ = await asyncio.wait(aws, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if reader in done:
                reader.result()
                raise EOFError("watch stream ended")

    async def _read(self, stream: Any) -> None:
        while True:
            raw = await stream.recv_message()
            if raw is None:
                return
            self._dispatch(raw)

    def _dispatch(self, raw: RawWatchResponse) -> None:
        if raw.created:
            w = self._inflight
            self._inflight = None
            self._wake.set()
            if w is None:
                if raw.watch_id >= 0 and not raw.canceled:
                    self._outbox.append(
                        pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=raw.watch_id))
                    )
                return
            if raw.canceled or raw.watch_id < 0:
                if is_auth_expired(raw.cancel_reason):
                    raise _Reconnect  # re-authenticate; every open watch is re-created
                w._fail(cancel_error(raw.cancel_reason, raw.compact_revision))
                return
            if w.closed:
                self._outbox.append(
                    pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=raw.watch_id))
                )
                return
            self._by_id[raw.watch_id] = w
            w._on_created(raw.watch_id, raw.revision)
            return
        if raw.watch_id == -1 and not raw.events and not raw.canceled:
            for w in self._by_id.values():
                w._on_progress(raw.revision, own=False)
            return
        w2 = self._by_id.get(raw.watch_id)
        if w2 is None:
            return
        if raw.canceled:
            del self._by_id[raw.watch_id]
            if is_auth_expired(raw.cancel_reason):
                raise _Reconnect
            w2.watch_id = None
            w2._fail(cancel_error(raw.cancel_reason, raw.compact_revision))
            return
        if raw.events:
            w2._on_events(raw.events, raw.fragment)
        else:
            w2._on_progress(raw.revision, own=True)
