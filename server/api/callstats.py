"""Per-method gRPC counts: go-grpc-prometheus's ``grpc_server_*`` metrics, and etcd's client
byte counters.

Theory of operation: :func:`instrument` wraps every handler of a service's ``__mapping__`` (the
mapping grpclib dispatches HTTP/2 requests with, and the JSON gateway calls in-process, so
both are counted, as etcd's gateway is a gRPC client of its own server). The wrapper counts
the call as started, makes its :class:`MethodStats` the *current* one (a context variable,
which the handler's child tasks inherit), and counts how it ended by gRPC code (``OK``,
``Canceled``, ``Unknown`` for an unexpected exception, else the status raised), and, with
``--metrics extensive``, how long it took (a unary call's duration also goes into one
histogram of all methods, the dashboard's request latency). :func:`count_received` and
:func:`count_sent`, called by the request intake and the response path of every handler,
count messages and bytes against the current method.

The counts are plain integers read when scraped (:mod:`coord.server.metrics`): a
prometheus-client child counter costs about 280 ns per ``inc`` (it takes a lock) and a
labelled lookup about 1 µs, measured here, against about 30 ns for an addition; a unary call
counts six things.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError

from coord.server.histogram import GRPC_BUCKETS, LATENCY_BUCKETS, Histogram

__all__ = [
    "CallStats",
    "MethodStats",
    "count_received",
    "count_sent",
]

#: go-grpc-prometheus's grpc_type label per cardinality
GRPC_TYPES = {
    Cardinality.UNARY_UNARY: "unary",
    Cardinality.UNARY_STREAM: "server_stream",
    Cardinality.STREAM_UNARY: "client_stream",
    Cardinality.STREAM_STREAM: "bidi_stream",
}
#: grpc-go's codes.Code.String() per status
CODE_NAMES = {
    Status.OK: "OK",
    Status.CANCELLED: "Canceled",
    Status.UNKNOWN: "Unknown",
    Status.INVALID_ARGUMENT: "InvalidArgument",
    Status.DEADLINE_EXCEEDED: "DeadlineExceeded",
    Status.NOT_FOUND: "NotFound",
    Status.ALREADY_EXISTS: "AlreadyExists",
    Status.PERMISSION_DENIED: "PermissionDenied",
    Status.RESOURCE_EXHAUSTED: "ResourceExhausted",
    Status.FAILED_PRECONDITION: "FailedPrecondition",
    Status.ABORTED: "Aborted",
    Status.OUT_OF_RANGE: "OutOfRange",
    Status.UNIMPLEMENTED: "Unimplemented",
    Status.INTERNAL: "Internal",
    Status.UNAVAILABLE: "Unavailable",
    Status.DATA_LOSS: "DataLoss",
    Status.UNAUTHENTICATED: "Unauthenticated",
}

_GRPC_PREFIX = 5  # a gRPC message's compressed flag and length


@dataclass
class MethodStats:
    """One RPC method's counts."""

    service: str  # etcdserverpb.KV
    method: str  # Range
    type: str  # unary, server_stream, client_stream, bidi_stream
    started: int = 0
    received: int = 0  # messages
    sent: int = 0
    received_bytes: int = 0  # with each message's 5-byte prefix
    sent_bytes: int = 0
    handled: dict[str, int] = field(default_factory=dict)  # by gRPC code name
    seconds: Histogram | None = None  # --metrics extensive

    def _check(self) -> None:
        assert sum(self.handled.values()) <= self.started


_CURRENT: ContextVar[MethodStats | None] = ContextVar("coord_grpc_method", default=None)


def count_received(size: int) -> None:
    """A request message of ``size`` payload bytes arrived for the current call."""
    ms = _CURRENT.get()
    if ms is not None:
        ms.received += 1
        ms.received_bytes += size + _GRPC_PREFIX


def count_sent(size: int, messages: int = 1) -> None:
    """Response messages (``messages`` of them, ``size`` payload bytes in all) leave for the
    current call."""
    ms = _CURRENT.get()
    if ms is not None:
        ms.sent += messages
        ms.sent_bytes += size + _GRPC_PREFIX * messages


RawHandler = Callable[[Any], Awaitable[None]]


def _counted(func: RawHandler, ms: MethodStats, latency: Histogram | None) -> RawHandler:
    async def run(stream: Any) -> None:
        ms.started += 1
        token = _CURRENT.set(ms)
        start = time.perf_counter()
        code = "OK"
        try:
            await func(stream)
        except GRPCError as e:
            code = CODE_NAMES.get(e.status, "Unknown")
            raise
        except asyncio.CancelledError:
            code = "Canceled"
            raise
        except Exception:
            code = "Unknown"
            raise
        finally:
            ms.handled[code] = ms.handled.get(code, 0) + 1
            took = time.perf_counter() - start
            if ms.seconds is not None:
                ms.seconds.observe(took)
            if latency is not None:
                latency.observe(took)
            _CURRENT.reset(token)

    return run


class _Instrumented:
    """A service whose ``__mapping__`` handlers are counted."""

    def __init__(self, service: Any, stats: CallStats) -> None:
        self._service = service
        self._stats = stats

    def __mapping__(self) -> dict[str, Handler]:
        out = {}
        for path, h in self._service.__mapping__().items():
            ms = self._stats.method(path, GRPC_TYPES[h.cardinality])
            unary = h.cardinality == Cardinality.UNARY_UNARY
            func = _counted(h.func, ms, self._stats.unary_latency if unary else None)
            out[path] = Handler(func, h.cardinality, h.request_type, h.reply_type)
        return out


class CallStats:
    """Every method's counts (see the module docstring)."""

    def __init__(self, handling_time: bool) -> None:
        self.handling_time = handling_time
        self.methods: dict[str, MethodStats] = {}
        #: every unary call's duration, finer-grained (the dashboard's request latency)
        self.unary_latency = Histogram(LATENCY_BUCKETS)

    def method(self, path: str, grpc_type: str) -> MethodStats:
        """The counts of ``/package.Service/Method`` (created once)."""
        ms = self.methods.get(path)
        if ms is None:
            service, _, name = path.lstrip("/").partition("/")
            seconds = Histogram(GRPC_BUCKETS) if self.handling_time else None
            ms = self.methods[path] = MethodStats(service, name, grpc_type, seconds=seconds)
        return ms

    def instrument(self, services: Iterable[Any]) -> list[Any]:
        """The services, each with counted handlers."""
        return [_Instrumented(s, self) for s in services]
