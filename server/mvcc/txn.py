"""Txn rules that need no store state: request validation, duplicate keys, compare logic.

These follow etcd's v3rpc ``checkTxnRequest``/``checkIntervals`` and the applier's
``compareKV`` line by line, including their corner cases:

* an empty RequestOp is rejected with "key not found";
* duplicate keys: within one branch, a key may be put at most once and may not be put if it
  lies in a delete range of that branch; nested txns contribute their puts and deletes to the
  enclosing branch, but the then/else branches of one nested txn may put the same key. A
  delete range is the half-open interval [key, range_end) compared bytewise (a single key when
  range_end is empty); like etcd, the "all keys >= key" form (range_end ``\\x00``) is taken
  literally as [key, "\\x00"), which contains no key, so it never conflicts;
* compares read the oneof member matching ``target``; a missing member counts as 0 / b"";
  an unknown target compares equal, an unknown result operator is true.
"""

from __future__ import annotations

from coord._pb.etcdserverpb import (
    Compare,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
)
from coord.errors import (
    DuplicateKeyError,
    EmptyKeyError,
    InvalidSortOptionError,
    KeyNotFoundError,
    LeaseProvidedError,
    ValueProvidedError,
)

from .index import KeyVersion

__all__ = [
    "check_delete",
    "check_put",
    "check_range",
    "check_txn",
    "compare_kv",
    "op_member",
]

Op = RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest


def op_member(op: RequestOp) -> Op:
    """The request held by ``op``; raises KeyNotFoundError for an empty op (as etcd)."""
    m: Op | None = op.request_range
    if m is None:
        m = op.request_put
        if m is None:
            m = op.request_delete_range
            if m is None:
                m = op.request_txn
                if m is None:
                    raise KeyNotFoundError()
    return m


def check_range(r: RangeRequest) -> None:
    """etcd's checkRangeRequest: key present, known sort enums."""
    if not r.key:
        raise EmptyKeyError()
    if int(r.sort_order) not in (0, 1, 2) or int(r.sort_target) not in (0, 1, 2, 3, 4):
        raise InvalidSortOptionError()


def check_put(r: PutRequest) -> None:
    """etcd's checkPutRequest: key given; no value with ignore_value, no lease with ignore_lease."""
    if not r.key:
        raise EmptyKeyError()
    if r.ignore_value and r.value:
        raise ValueProvidedError()
    if r.ignore_lease and r.lease:
        raise LeaseProvidedError()


def check_delete(r: DeleteRangeRequest) -> None:
    """etcd's checkDeleteRequest: key present."""
    if not r.key:
        raise EmptyKeyError()


def check_txn(r: TxnRequest) -> None:
    """Validate a whole txn statically (etcd's checkTxnRequest then checkIntervals).

    The op-count limit is the API layer's (it depends on configuration).
    """
    _check_ops(r)
    _check_intervals(r.success)
    _check_intervals(r.failure)


def _check_ops(r: TxnRequest) -> None:
    for c in r.compare:
        if not c.key:
            raise EmptyKeyError()
    for op in (*r.success, *r.failure):
        m = op_member(op)
        if isinstance(m, RangeRequest):
            check_range(m)
        elif isinstance(m, PutRequest):
            check_put(m)
        elif isinstance(m, DeleteRangeRequest):
            check_delete(m)
        else:
            _check_ops(m)


class _Dels:
    """The delete intervals of a branch (a list is enough: branches are <= 128 ops)."""

    __slots__ = ("ivs",)

    def __init__(self) -> None:
        self.ivs: list[tuple[bytes, bytes | None]] = []

    def add(self, key: bytes, end: bytes) -> None:
        self.ivs.append((key, end or None))

    def contains(self, k: bytes) -> bool:
        for lo, hi in self.ivs:
            if hi is None:
                if k == lo:
                    return True
            elif lo <= k < hi:
                return True
        return False


def _check_intervals(reqs: list[RequestOp]) -> tuple[set[bytes], _Dels]:
    dels = _Dels()
    members = [op_member(op) for op in reqs]
    for m in members:
        if isinstance(m, DeleteRangeRequest):
            dels.add(m.key, m.range_end)
    puts: set[bytes] = set()
    for t in members:
        if not isinstance(t, TxnRequest):
            continue
        puts_then, dels_then = _check_intervals(t.success)
        puts_else, dels_else = _check_intervals(t.failure)
        for k in puts_then:
            if k in puts or dels.contains(k):
                raise DuplicateKeyError()
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or dels.contains(k):
                raise DuplicateKeyError()
            puts.add(k)
        dels.ivs += dels_then.ivs
        dels.ivs += dels_else.ivs
    for p in members:
        if not isinstance(p, PutRequest):
            continue
        if p.key in puts or dels.contains(p.key):
            raise DuplicateKeyError()
        puts.add(p.key)
    return puts, dels


def compare_kv(c: Compare, kv: KeyVersion | None) -> bool:
    """etcd's compareKV of one compare against one key (None = the zero KeyValue)."""
    target = int(c.target)
    result: int
    if target == 3:  # VALUE
        a = kv.value if kv is not None else b""
        b = c.value if c.value is not None else b""
        result = (a > b) - (a < b)
    else:
        if target == 0:
            x, y = (kv.version if kv else 0), c.version
        elif target == 1:
            x, y = (kv.create_revision if kv else 0), c.create_revision
        elif target == 2:
            x, y = (kv.mod_revision if kv else 0), c.mod_revision
        elif target == 4:
            x, y = (kv.lease if kv else 0), c.lease
        else:
            x, y = 0, 0
        y = y or 0
        result = (x > y) - (x < y)
    op = int(c.result)
    if op == 0:
        return result == 0
    if op == 1:
        return result > 0
    if op == 2:
        return result < 0
    if op == 3:
        return result != 0
    return True
