"""The asyncio client: :class:`AsyncClient` (the one implementation; ``Client`` wraps it).

Theory of operation. An ``AsyncClient`` is a :class:`~coord._conn.Connection` (endpoints,
failover, retries, auth, TLS) plus two background services that each own one bidi stream:
:class:`~coord.watch.WatchMux` (all watches) and :class:`~coord.lease.KeepAliver` (all lease
keep-alives). Both start lazily on first use and are stopped by :meth:`AsyncClient.aclose`,
which cancels and awaits every task the client spawned (the client owns its tasks; none
outlives it).

Hot RPCs (Range, Put, DeleteRange, Txn responses, Watch responses) are encoded/decoded by the
hand-written codec in :mod:`coord._kvcodec`; the rest use the betterproto2 messages.

Reads (Range, read-only status/list calls) are retried on another endpoint after a transport
failure or UNAVAILABLE; writes (Put, DeleteRange, Txn, LeaseGrant, Compact) only when the
failure happened before the request could be sent (see :mod:`coord._conn`).
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, overload

from . import _kvcodec
from ._conn import Connection, _Caller, parse_endpoints
from ._pb import etcdserverpb as pb
from ._protowire import ResponseOpField
from ._tls import make_ssl_context
from .lease import AsyncLease, KeepAliver, LeaseGrant
from .txn import (
    Compare,
    Delete,
    Get,
    KeyLike,
    Op,
    Txn,
    key_range,
    lease_id,
    sort_spec,
    to_bytes,
)
from .types import (
    HashKV,
    KeyValue,
    LeaseInfo,
    Member,
    RangeResult,
    ServerStatus,
    TxnResult,
)
from .watch import AsyncWatch, WatchMux

__all__ = ["AsyncClient"]

_KV = "/etcdserverpb.KV/"


def _txn_results(ops: Sequence[Op], decoded: list[tuple[int, Any]]) -> list[object]:
    out: list[object] = []
    for op, (kind, payload) in zip(ops, decoded):
        if kind == ResponseOpField.RESPONSE_RANGE:
            out.append(payload.kvs)
        elif kind == ResponseOpField.RESPONSE_PUT:
            out.append(payload[1])
        elif kind == ResponseOpField.RESPONSE_DELETE_RANGE:
            out.append(payload[2] if isinstance(op, Delete) and op.prev_kv else payload[1])
        elif kind == ResponseOpField.RESPONSE_TXN:
            assert isinstance(op, Txn)
            rev, ok, sub = payload
            out.append(TxnResult(ok, _txn_results(op.success if ok else op.failure, sub), rev))
        else:
            out.append(None)
    return out


class AsyncClient:
    """An asyncio client for coord-server and etcd v3.

    Args:
        endpoints: ``"host:port"``, a comma-separated string or a list of them; ``https://``
            marks TLS endpoints.
        timeout: default deadline (seconds) of each unary call, retries included (None: none).
        ca_cert, cert, key: PEM file paths for TLS (CA to trust; client certificate and key).
        ssl: a ready ``ssl.SSLContext`` instead of the file paths (ALPN "h2" is set on it).
        user, password: authenticate with etcd's simple auth; the token is refreshed
            automatically when the server reports it invalid.
        keepalive: seconds between HTTP/2 pings on connections with open calls or streams
            (>= 5: etcd rejects more frequent pings); a peer silent for 1.5x this is treated
            as dead and the client fails over. None disables pings.
        connect_timeout: seconds a server may stay silent when it owes an answer: connecting
            (TCP, TLS and its first HTTP/2 frame), a PING sent before writing on a connection
            idle for a second, and the first bytes of a response (a PING goes out after half
            of it). A server silent that long is unresponsive (hung, SIGSTOPped): its
            connection is dropped and the call goes to the next endpoint, so a stuck endpoint
            costs about this long, not ``timeout``. None: no such limit.

    Use ``async with AsyncClient(...) as client:`` (or call :meth:`aclose`).
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
        eps = parse_endpoints(endpoints if isinstance(endpoints, str) else list(endpoints))
        if ssl is None and (ca_cert or cert):
            ssl = make_ssl_context(ca_cert, cert, key)
        elif ssl is not None:
            ssl.set_alpn_protocols(["h2"])
        self._setup(
            Connection(
                eps,
                timeout=timeout,
                ssl=ssl,
                user=user,
                password=password,
                keepalive=keepalive,
                connect_timeout=connect_timeout,
            )
        )

    def _setup(self, conn: Connection) -> None:
        self._conn = conn
        self._calls: _Caller = conn  # what unary calls go through
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch_mux = WatchMux(self._conn, self._spawn)
        self._keepaliver = KeepAliver(self._conn, self._spawn)
        self._closed = False

    def _blocking_twin(self) -> AsyncClient:
        """A twin for the blocking ``Client``: its unary methods (only those) run on a
        :class:`~coord._conn.SyncConnection`, never suspend and are driven with
        :func:`~coord._conn.run_sync`; it shares this client's current endpoint and token."""
        twin = AsyncClient.__new__(AsyncClient)
        twin._calls = self._conn.blocking()
        return twin

    @property
    def endpoints(self) -> list[str]:
        """The endpoints, as ``host:port``."""
        return [str(e) for e in self._conn.endpoints]

    @property
    def current_endpoint(self) -> str:
        """The endpoint new calls and streams currently go to."""
        return str(self._conn.endpoints[self._conn.current])

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop watches and keep-alives (leases are not revoked) and close the connections."""
        if self._closed:
            return
        self._closed = True
        self._watch_mux.close()
        self._keepaliver.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._conn.aclose()

    close = aclose

    # ------------------------------------------------------------------------------------ KV

    @overload
    async def put(
        self, key: KeyLike, value: KeyLike, *, lease: object = None, prev_kv: Literal[False] = False
    ) -> int: ...

    @overload
    async def put(
        self, key: KeyLike, value: KeyLike, *, lease: object = None, prev_kv: Literal[True]
    ) -> tuple[int, KeyValue | None]: ...

    async def put(
        self, key: KeyLike, value: KeyLike, *, lease: object = None, prev_kv: bool = False
    ) -> int | tuple[int, KeyValue | None]:
        """Set ``key`` to ``value``; return the new store revision.

        Args:
            lease: a lease object or an int lease ID to attach the key to.
            prev_kv: return ``(revision, previous KeyValue or None)`` instead.
        """
        req = _kvcodec.encode_put(to_bytes(key), to_bytes(value), lease_id(lease), prev_kv)
        rev, prev = await self._calls.unary(_KV + "Put", req, _kvcodec.decode_put, idempotent=False)
        return (rev, prev) if prev_kv else rev

    async def get(
        self, key: KeyLike, *, revision: int = 0, serializable: bool = False
    ) -> KeyValue | None:
        """The KeyValue at ``key`` (at ``revision`` if given), or None."""
        req = _kvcodec.encode_range(to_bytes(key), revision=revision, serializable=serializable)
        res = await self._calls.unary(_KV + "Range", req, _kvcodec.decode_range, idempotent=True)
        return res.kvs[0] if res.kvs else None

    async def get_prefix(self, prefix: KeyLike, **options: Any) -> list[KeyValue]:
        """Every key starting with ``prefix``, sorted by key (``range`` options accepted)."""
        return (await self.range(prefix, prefix=True, **options)).kvs

    async def get_all(self, **options: Any) -> list[KeyValue]:
        """Every key in the store."""
        return (await self.range(b"", prefix=True, **options)).kvs

    async def range(
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
        """Read ``[key, range_end)`` (or a prefix) with every etcd Range option.

        Args:
            range_end: exclusive end; ``"\\0"`` means "every key >= key"; None: just ``key``.
            prefix: select every key starting with ``key``.
            limit: maximum number of keys (0: no limit); ``RangeResult.more`` tells if cut.
            revision: read at this past revision (0: latest).
            sort: ``"key"``, ``"create"``, ``"mod"``, ``"version"`` or ``"value"``, prefixed
                with ``-`` for descending.
            min_/max_mod_revision, min_/max_create_revision: server-side filters.

        Raises:
            CompactedError / FutureRevisionError for a revision out of the store's window.
        """
        k, e = key_range(key, range_end, prefix)
        order, target = sort_spec(sort)
        req = _kvcodec.encode_range(
            k,
            e,
            limit,
            revision,
            order,
            target,
            serializable,
            keys_only,
            count_only,
            min_mod_revision,
            max_mod_revision,
            min_create_revision,
            max_create_revision,
        )
        return await self._calls.unary(_KV + "Range", req, _kvcodec.decode_range, idempotent=True)

    @overload
    async def delete(self, key: KeyLike, *, prev_kv: Literal[False] = False) -> int: ...

    @overload
    async def delete(self, key: KeyLike, *, prev_kv: Literal[True]) -> list[KeyValue]: ...

    async def delete(self, key: KeyLike, *, prev_kv: bool = False) -> int | list[KeyValue]:
        """Delete ``key``; return the number of keys deleted (the deleted kvs with prev_kv)."""
        return await self._delete(to_bytes(key), b"", prev_kv)

    @overload
    async def delete_prefix(self, prefix: KeyLike, *, prev_kv: Literal[False] = False) -> int: ...

    @overload
    async def delete_prefix(self, prefix: KeyLike, *, prev_kv: Literal[True]) -> list[KeyValue]: ...

    async def delete_prefix(
        self, prefix: KeyLike, *, prev_kv: bool = False
    ) -> int | list[KeyValue]:
        """Delete every key starting with ``prefix``; return the count (kvs with prev_kv)."""
        k, e = key_range(prefix, None, True)
        return await self._delete(k, e, prev_kv)

    async def delete_range(
        self, key: KeyLike, range_end: KeyLike, *, prev_kv: bool = False
    ) -> int | list[KeyValue]:
        """Delete ``[key, range_end)``; return the count (kvs with prev_kv)."""
        return await self._delete(to_bytes(key), to_bytes(range_end), prev_kv)

    async def _delete(self, k: bytes, e: bytes, prev_kv: bool) -> int | list[KeyValue]:
        req = _kvcodec.encode_delete(k, e, prev_kv)
        _, deleted, prevs = await self._calls.unary(
            _KV + "DeleteRange", req, _kvcodec.decode_delete, idempotent=False
        )
        return prevs if prev_kv else deleted

    async def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Run a transaction; returns ``TxnResult`` = ``(succeeded, results)`` + ``.revision``.

        ``results`` has one entry per operation of the branch that ran: ``list[KeyValue]``
        for Get, the previous KeyValue (or None) for Put, the deleted count for Delete (the
        deleted kvs with ``prev_kv=True``) and a nested ``TxnResult`` for Txn.
        """
        t = Txn(list(compare), list(success), list(failure))
        read_only = all(isinstance(o, Get) for o in (*t.success, *t.failure))
        rev, ok, decoded = await self._calls.unary(
            _KV + "Txn", t.request(), _kvcodec.decode_txn, idempotent=read_only
        )
        return TxnResult(ok, _txn_results(t.success if ok else t.failure, decoded), rev)

    async def compact(self, revision: int, *, physical: bool = False) -> None:
        """Compact the store's history up to ``revision``."""
        await self._calls.unary(
            _KV + "Compact",
            pb.CompactionRequest(revision=revision, physical=physical),
            pb.CompactionResponse.parse,
            idempotent=False,
        )

    # --------------------------------------------------------------------------------- lease

    def lease(
        self, ttl: int, *, id: int = 0, on_lost: Callable[[AsyncLease], object] | None = None
    ) -> LeaseGrant:
        """Grant a lease kept alive in the background: ``lease = await client.lease(10)``.

        ``async with client.lease(10) as lease:`` revokes it on exit. ``on_lost`` is called
        (on the event loop) if the lease is lost involuntarily.
        """
        return LeaseGrant(self, ttl, id, on_lost)

    async def _grant(
        self, ttl: int, lease_id_: int, on_lost: Callable[[AsyncLease], object] | None
    ) -> AsyncLease:
        sent = time.monotonic()
        resp = await self._calls.unary(
            "/etcdserverpb.Lease/LeaseGrant",
            pb.LeaseGrantRequest(ttl=ttl, id=lease_id_),
            pb.LeaseGrantResponse.parse,
            idempotent=False,
        )
        lease = AsyncLease(self, resp.id, resp.ttl, sent)
        if on_lost is not None:
            lease.on_lost(on_lost)
        self._keepaliver.add(lease)
        return lease

    async def revoke_lease(self, lease: object) -> None:
        """Revoke a lease (object or ID), deleting its keys.

        Raises:
            LeaseNotFoundError: no such lease.
        """
        await self._calls.unary(
            "/etcdserverpb.Lease/LeaseRevoke",
            pb.LeaseRevokeRequest(id=lease_id(lease)),
            pb.LeaseRevokeResponse.parse,
            idempotent=True,
        )

    async def lease_time_to_live(self, lease: object, *, keys: bool = False) -> LeaseInfo:
        """Remaining TTL of a lease (``ttl`` -1 when it does not exist), optionally its keys."""
        resp = await self._calls.unary(
            "/etcdserverpb.Lease/LeaseTimeToLive",
            pb.LeaseTimeToLiveRequest(id=lease_id(lease), keys=keys),
            pb.LeaseTimeToLiveResponse.parse,
            idempotent=True,
        )
        return LeaseInfo(resp.id, resp.ttl, resp.granted_ttl, tuple(resp.keys))

    async def leases(self) -> list[int]:
        """IDs of every lease in the cluster."""
        resp = await self._calls.unary(
            "/etcdserverpb.Lease/LeaseLeases",
            pb.LeaseLeasesRequest(),
            pb.LeaseLeasesResponse.parse,
            idempotent=True,
        )
        return [s.id for s in resp.leases]

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
    ) -> AsyncWatch:
        """Watch a key, a range or a prefix: ``async for event in client.watch(...)``.

        Args:
            start_revision: first revision to deliver (0: changes after now). Older history
                is replayed; a compacted revision raises ``CompactedError``.
            prev_kv: attach the previous KeyValue to each event.
            no_put, no_delete: server-side filters.
            progress_notify: ask for periodic progress notifications (see
                ``AsyncWatch.responses``).

        ``await`` the result or use ``async with`` to wait until the server confirmed the
        watch. Failover to another endpoint resumes without losing or repeating events.
        """
        k, e = key_range(key, range_end, prefix)
        if not k:
            k = b"\x00"
        return AsyncWatch(
            self._watch_mux, k, e, start_revision, prev_kv, no_put, no_delete, progress_notify
        )

    def watch_prefix(self, prefix: KeyLike, **options: Any) -> AsyncWatch:
        """``watch(prefix, prefix=True, ...)``."""
        return self.watch(prefix, prefix=True, **options)

    async def request_progress(self) -> None:
        """Ask the server for a progress notification on the watch stream.

        Every open watch then receives a progress ``WatchResponse`` (see
        ``AsyncWatch.responses``).
        """
        self._watch_mux.request_progress()

    # --------------------------------------------------------------------- cluster/maintenance

    async def status(self) -> ServerStatus:
        """Status of the current endpoint's member."""
        r = await self._calls.unary(
            "/etcdserverpb.Maintenance/Status",
            pb.StatusRequest(),
            pb.StatusResponse.parse,
            idempotent=True,
        )
        h = r.header or pb.ResponseHeader()
        return ServerStatus(
            r.version,
            r.db_size,
            r.leader,
            r.raft_index,
            r.raft_term,
            r.raft_applied_index,
            tuple(r.errors),
            r.db_size_in_use,
            r.is_learner,
            h.member_id,
            h.revision,
        )

    async def members(self) -> list[Member]:
        """The cluster's members."""
        r = await self._calls.unary(
            "/etcdserverpb.Cluster/MemberList",
            pb.MemberListRequest(),
            pb.MemberListResponse.parse,
            idempotent=True,
        )
        return [
            Member(m.id, m.name, tuple(m.peer_ur_ls), tuple(m.client_ur_ls), m.is_learner)
            for m in r.members
        ]

    async def hash_kv(self, revision: int = 0) -> HashKV:
        """Hash of the KV store up to ``revision`` (0: latest), for consistency checks."""
        r = await self._calls.unary(
            "/etcdserverpb.Maintenance/HashKV",
            pb.HashKvRequest(revision=revision),
            pb.HashKvResponse.parse,
            idempotent=True,
        )
        return HashKV(r.hash, r.compact_revision, (r.header or pb.ResponseHeader()).revision)
