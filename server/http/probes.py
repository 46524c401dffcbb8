"""etcd's liveness and readiness probes: ``/livez`` and ``/readyz``.

Theory of operation: each probe is a named list of checks, run in order on every request (etcd
3.5.11+ and 3.6, server/etcdserver/api/etcdhttp/health.go):

* ``/livez``: ``serializable_read`` (a local read works: the member's apply path is not stuck);
* ``/readyz``: ``data_corruption`` (no CORRUPT alarm), ``serializable_read``,
  ``linearizable_read`` (a read through consensus works: there is a leader and a quorum) and
  ``non_learner``.

``/readyz/<check>`` runs one check; ``?exclude=<check>`` (repeatable) skips one; ``?verbose``
lists every check's verdict. A probe that passes answers 200 ``ok``; one that fails answers 503
with every check's line (``[+]name ok`` / ``[-]name failed: reason``), as etcd does. Each check
runs the gRPC handlers in-process (the gateway's ``call``) within ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import betterproto2
from grpclib.exceptions import GRPCError

from coord._pb import etcdserverpb as pb

__all__ = ["Probes"]

Call = Callable[[str, betterproto2.Message], Awaitable[betterproto2.Message]]
Alarms = Callable[[], Awaitable[list[pb.AlarmMember]]]
_Check = Callable[[], Awaitable[None]]


class _CheckFailed(Exception):
    """A check's reason to fail."""


class Probes:
    """``/livez`` and ``/readyz`` (see the module docstring)."""

    def __init__(self, call: Call, alarms: Alarms, timeout: float) -> None:
        self._call = call
        self._alarms = alarms
        self._timeout = timeout
        self._probes: dict[str, dict[str, _Check]] = {
            "/livez": {"serializable_read": self._serializable_read},
            "/readyz": {
                "data_corruption": self._data_corruption,
                "serializable_read": self._serializable_read,
                "linearizable_read": self._linearizable_read,
                "non_learner": self._non_learner,
            },
        }

    def serves(self, path: str) -> bool:
        root, _, check = path.partition("/")[2].partition("/")
        checks = self._probes.get("/" + root)
        return checks is not None and (not check or check in checks)

    async def answer(self, path: str, query: str, method: str) -> tuple[int, bytes]:
        """``(HTTP status, text body)`` for a path :meth:`serves`."""
        if method != "GET":
            return 405, b"Method Not Allowed\n"
        root, _, one = path.partition("/")[2].partition("/")
        checks = self._probes["/" + root]
        params = parse_qs(query, keep_blank_values=True)
        excluded = set(params.get("exclude", []))
        names = [one] if one else [n for n in checks if n not in excluded]
        lines, failed = [], False
        for name in names:
            try:
                async with asyncio.timeout(self._timeout):
                    await checks[name]()
            except TimeoutError:
                lines.append(f"[-]{name} failed: timed out after {self._timeout:g} s\n")
                failed = True
            except (_CheckFailed, GRPCError) as e:
                reason = e.message if isinstance(e, GRPCError) else str(e)
                lines.append(f"[-]{name} failed: {reason}\n")
                failed = True
            else:
                lines.append(f"[+]{name} ok\n")
        report = "".join(lines)
        if failed:
            return 503, (report + "\n").encode()  # Go's http.Error adds the newline
        return 200, ((report if "verbose" in params else "") + "ok\n").encode()

    # ---------------------------------------------------------------------------------- checks

    async def _read(self, serializable: bool) -> None:
        await self._call(
            "/v3/kv/range",
            pb.RangeRequest(key=b"\0", keys_only=True, limit=1, serializable=serializable),
        )

    async def _serializable_read(self) -> None:
        await self._read(serializable=True)

    async def _linearizable_read(self) -> None:
        await self._read(serializable=False)

    async def _data_corruption(self) -> None:
        if any(a.alarm == pb.AlarmType.CORRUPT for a in await self._alarms()):
            raise _CheckFailed("alarm activated: CORRUPT")

    async def _non_learner(self) -> None:
        status = await self._call("/v3/maintenance/status", pb.StatusRequest())
        assert isinstance(status, pb.StatusResponse)
        if status.is_learner:
            raise _CheckFailed("not supported for learner")
