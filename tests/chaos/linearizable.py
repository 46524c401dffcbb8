"""Linearizability of a register's history: a Wing-Gong-Lowe search in Porcupine's style.

Theory of operation
-------------------
The model is one register per key (initially absent, ``None``) with three operations:
``put(v)``, ``get() -> v`` and ``cas(expected, new) -> swapped`` (a txn comparing the value).
A history is partitioned per key (a register's keys are independent, P-compositionality),
and each key's operations are checked on their own.

Each operation is an interval ``[invoke, ret]``. ``fail`` operations had no effect and are
dropped; ``unknown`` ones (may or may not have happened) have ``ret = inf``: they can be
linearized anywhere after their invocation, including after everything else (which is the
same as never). Reads that did not succeed say nothing and are dropped.

The search (WGL, as in Porcupine's ``checkSingle``): the call and return events, ordered by
time, form a doubly linked list. Walking it, at a call event we try to linearize that operation
now: if the model accepts its result from the current state and the pair (set of linearized
ops, new state) has not been explored before (the cache), it is lifted out of the list and the
walk restarts at the head; at a return event the operation that returns there was not
linearized in time, so we backtrack to the last choice. The history is linearizable when the
list becomes empty.

Pruning (sound and complete for this model): an ``unknown`` write whose value nobody observed
(no read returned it, no cas expected it) and after whose invocation no cas failed can always
be placed after every other operation, so it is removed before the search. Writes carry
unique values in the workloads, which keeps the states few.

The search is bounded by ``max_steps``; a key that exceeds it is reported as undecided
(neither pass nor violation) so a pathological history cannot hang a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .history import FAIL, OK, UNKNOWN, Op

__all__ = ["KeyResult", "LinearizabilityResult", "check_key", "check_register"]


@dataclass
class KeyResult:
    key: str
    ok: bool | None  # None: undecided (search budget exhausted)
    ops: int
    steps: int
    #: on a violation: the longest linearizable prefix found and the op that could not follow
    explanation: str = ""


@dataclass
class LinearizabilityResult:
    keys: list[KeyResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(k.ok is not False for k in self.keys)

    @property
    def violations(self) -> list[KeyResult]:
        return [k for k in self.keys if k.ok is False]

    @property
    def undecided(self) -> list[KeyResult]:
        return [k for k in self.keys if k.ok is None]

    def __str__(self) -> str:
        lines = [
            f"linearizability: {len(self.keys)} keys, "
            f"{sum(k.ops for k in self.keys)} ops, {len(self.violations)} violations, "
            f"{len(self.undecided)} undecided"
        ]
        for k in self.violations:
            lines.append(f"  key {k.key}: NOT linearizable\n{k.explanation}")
        for k in self.undecided:
            lines.append(f"  key {k.key}: undecided after {k.steps} steps")
        return "\n".join(lines)


def _step(state: Any, op: Op) -> tuple[bool, Any]:
    """The register model: (does ``op``'s result fit ``state``, the state after it)."""
    if op.f == "put":
        return True, op.value
    if op.f == "get":
        return op.result == state, state
    if op.f == "cas":
        expected, new = op.value
        swapped = state == expected
        if op.outcome == UNKNOWN:
            return True, new if swapped else state
        return bool(op.result) == swapped, new if swapped else state
    raise ValueError(f"unknown register op {op.f!r}")


def _relevant(ops: list[Op]) -> list[Op]:
    """Drop ops that cannot matter (see the module docstring)."""
    out = [op for op in ops if op.outcome != FAIL and not (op.f == "get" and op.outcome != OK)]
    observed = {op.result for op in out if op.f == "get"}
    observed |= {op.value[0] for op in out if op.f == "cas"}
    failed_cas = [op.invoke for op in out if op.f == "cas" and op.outcome == OK and not op.result]

    def removable(op: Op) -> bool:
        if op.outcome != UNKNOWN or op.f not in ("put", "cas"):
            return False
        written = op.value if op.f == "put" else op.value[1]
        return written not in observed and not any(t > op.invoke for t in failed_cas)

    return [op for op in out if not removable(op)]


class _Entry:
    __slots__ = ("id", "is_call", "match", "next", "op", "prev", "time")

    def __init__(self, op: Op | None, oid: int, is_call: bool, time: float) -> None:
        self.op = op
        self.id = oid
        self.is_call = is_call
        self.time = time
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def check_key(key: str, ops: list[Op], max_steps: int = 2_000_000) -> KeyResult:
    """Check one key's operations (all with ``op.key == key``)."""
    ops = _relevant(ops)
    events: list[tuple[float, int, int, bool]] = []
    for i, op in enumerate(ops):
        # at equal times calls sort before returns (Porcupine's choice): the ops count as
        # concurrent, which is the more permissive reading of a tie
        events.append((op.invoke, 0, i, True))
        events.append((op.ret, 1, i, False))
    events.sort()
    head = _Entry(None, -1, False, -math.inf)
    prev = head
    calls: dict[int, _Entry] = {}
    for t, _, i, is_call in events:
        e = _Entry(ops[i], i, is_call, t)
        if is_call:
            calls[i] = e
        else:
            calls[i].match = e
        prev.next, e.prev = e, prev
        prev = e

    def lift(e: _Entry) -> None:
        assert e.prev is not None
        assert e.match is not None
        assert e.match.prev is not None
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev
        m = e.match
        assert m.prev is not None
        m.prev.next = m.next
        if m.next is not None:
            m.next.prev = m.prev

    def unlift(e: _Entry) -> None:
        m = e.match
        assert m is not None
        assert m.prev is not None
        assert e.prev is not None
        m.prev.next = m
        if m.next is not None:
            m.next.prev = m
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e

    state: Any = None
    linearized = 0
    cache: set[tuple[int, Any]] = set()
    stack: list[tuple[_Entry, Any]] = []
    best: list[Op] = []
    stuck: Op | None = None
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            return KeyResult(key, None, len(ops), steps)
        assert entry is not None
        if entry.is_call:
            assert entry.op is not None
            fits, new_state = _step(state, entry.op)
            if fits:
                new_lin = linearized | (1 << entry.id)
                if (new_lin, new_state) not in cache:
                    cache.add((new_lin, new_state))
                    stack.append((entry, state))
                    state, linearized = new_state, new_lin
                    lift(entry)
                    if len(stack) > len(best):
                        best = [e.op for e, _ in stack if e.op is not None]
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                return KeyResult(key, False, len(ops), steps, _explain(best, stuck or entry.op))
            if len(stack) == len(best):
                stuck = entry.op
            top, state = stack.pop()
            linearized &= ~(1 << top.id)
            unlift(top)
            entry = top.next
    return KeyResult(key, True, len(ops), steps)


def _explain(best: list[Op], stuck: Op | None) -> str:
    tail = best[-8:]
    lines = [f"    longest linearizable prefix ({len(best)} ops), last ones:"]
    lines += [f"      {op}" for op in tail]
    if stuck is not None:
        lines.append(f"    then could not linearize: {stuck}")
    return "\n".join(lines)


def check_register(ops: list[Op], max_steps: int = 2_000_000) -> LinearizabilityResult:
    """Check every key of a register history (``put``/``get``/``cas`` ops)."""
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        if op.f in ("put", "get", "cas"):
            by_key.setdefault(op.key, []).append(op)
    result = LinearizabilityResult()
    for key in sorted(by_key):
        result.keys.append(check_key(key, by_key[key], max_steps))
    return result
