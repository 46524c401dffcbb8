"""Recorded client operations: invocation and return times, and what the outcome was.

Theory of operation
-------------------
A workload calls :meth:`History.invoke` just before it sends a request and :meth:`Op.finish`
when the request returned. Times are ``time.monotonic()`` (CLOCK_MONOTONIC, comparable across
processes on one Linux machine). Each operation ends with one of three outcomes:

* ``ok``: the server answered; ``result`` holds what it said;
* ``fail``: the request surely had no effect (it never reached a server, or the server rejected
  it before proposing it);
* ``unknown``: it may or may not have taken effect (timeout, lost connection, leader change).
  A checker treats it as still pending forever (return time infinity).

:func:`outcome_of` maps a client exception to ``fail`` or ``unknown``, conservatively: only
errors that prove the request was not applied count as ``fail``. Classifying an applied write
as ``fail`` would make a checker report false violations; classifying a rejected one as
``unknown`` only weakens the check a little.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from coord import errors

__all__ = ["FAIL", "History", "OK", "Op", "UNKNOWN", "outcome_of"]

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"
PENDING = "pending"

#: errors after which a request certainly had no effect.
_DEFINITE: tuple[type[BaseException], ...] = (
    errors.ConnectionFailedError,  # every attempt failed before the request was sent
    errors.InvalidArgumentError,  # validated and rejected before proposing
    errors.LeaseNotFoundError,
    errors.CompactedError,
    errors.FutureRevisionError,
    errors.PermissionDeniedError,
    errors.NotSupportedForLearnerError,
)


def outcome_of(exc: BaseException) -> str:
    """``fail`` if ``exc`` proves the request had no effect, else ``unknown``."""
    return FAIL if isinstance(exc, _DEFINITE) else UNKNOWN


@dataclass
class Op:
    """One client operation.

    ``f`` is the function (``put``, ``get``, ``cas`` for the register); ``value`` its argument
    (``put``: the value; ``cas``: ``(expected, new)``; ``get``: None); ``result`` what the
    server answered (``get``: the value or None; ``cas``: whether it swapped).
    """

    process: int
    f: str
    key: str
    value: Any
    invoke: float
    ret: float = math.inf
    outcome: str = PENDING
    result: Any = None
    error: str = ""
    #: the store revision of a successful write (put, or a cas that swapped)
    revision: int = 0
    index: int = field(default=-1, compare=False)

    def finish(self, outcome: str, result: Any = None, error: str = "") -> None:
        """Record the return (now) and the outcome; an unknown outcome keeps ``ret`` infinite."""
        assert self.outcome == PENDING, f"op finished twice: {self}"
        assert outcome in (OK, FAIL, UNKNOWN)
        self.outcome, self.result, self.error = outcome, result, error
        if outcome != UNKNOWN:
            self.ret = time.monotonic()

    def fail_with(self, exc: BaseException) -> None:
        """Finish with the outcome :func:`outcome_of` gives ``exc``."""
        self.finish(outcome_of(exc), error=f"{type(exc).__name__}: {exc}")

    def __str__(self) -> str:
        ret = "inf" if math.isinf(self.ret) else f"{self.ret:.4f}"
        return (
            f"p{self.process} {self.f}({self.key}, {self.value!r}) -> {self.outcome} "
            f"{self.result!r} [{self.invoke:.4f}, {ret}]"
        )


class History:
    """A thread-safe, append-only list of operations."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._lock = threading.Lock()

    def invoke(self, process: int, f: str, key: str, value: Any = None) -> Op:
        op = Op(process, f, key, value, time.monotonic())
        with self._lock:
            op.index = len(self.ops)
            self.ops.append(op)
        return op

    def add(self, op: Op) -> Op:
        """Append an already built op (hand-made histories in tests)."""
        with self._lock:
            op.index = len(self.ops)
            self.ops.append(op)
        return op

    def close_pending(self) -> None:
        """Ops still pending when the run ends are unknown."""
        for op in self.ops:
            if op.outcome == PENDING:
                op.outcome = UNKNOWN

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for op in self.ops:
            k = f"{op.f}:{op.outcome}"
            out[k] = out.get(k, 0) + 1
        return out
