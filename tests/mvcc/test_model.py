"""Hypothesis stateful test: KVStore against a plain dict-of-history model.

Every response is decoded with betterproto2 and compared with what the model predicts; the
store's ``_check()`` invariants run after every step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from coord._pb.etcdserverpb import (
    Compare,
    CompareCompareResult,
    CompareCompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeRequestSortOrder,
    RangeRequestSortTarget,
    RangeResponse,
    RequestOp,
    ResponseOp,
    TxnRequest,
    TxnResponse,
)
from coord._pb.mvccpb import KeyValue
from coord.errors import (
    CompactedError,
    CoordError,
    DuplicateKeyError,
    FutureRevisionError,
    KeyNotFoundError,
    LeaseNotFoundError,
)
from coord.server.mvcc import KVStore

KEYS = [b"a", b"ab", b"abc", b"b", b"b\x00", b"c", b"d\xff"]
LEASES = [0, 0, 5, 7, 9]  # 9 does not exist
LIVE_LEASES = {5, 7}
VALUES = [b"", b"x", b"y", b"zz" * 3]
ENDS = [b"", b"", b"\x00", b"b", b"c", b"ab", b"e"]

KV = tuple[bytes, int, int, int, bytes, int]  # key, create, mod, version, value, lease


@dataclass
class Model:
    """key -> list of (revision, KV or None for a deletion)."""

    rev: int = 1
    compact: int = 0
    hist: dict[bytes, list[tuple[int, KV | None]]] = field(default_factory=dict)
    pending: list[tuple[bytes, KV | None]] = field(default_factory=list)

    def at(self, key: bytes, rev: int) -> KV | None:
        found: KV | None = None
        for r, kv in self.hist.get(key, []):
            if r <= rev:
                found = kv
        return found

    def keys_in(self, key: bytes, end: bytes) -> list[bytes]:
        ks = sorted(self.hist)
        if not end:
            return [key] if key in self.hist else []
        if end == b"\x00":
            return [k for k in ks if k >= key]
        return [k for k in ks if key <= k < end]

    def view(self) -> int:
        return self.rev + 1 if self.pending else self.rev

    def write(self, key: bytes, kv: KV | None) -> None:
        self.hist.setdefault(key, []).append((self.rev + 1, kv))
        self.pending.append((key, kv))

    def commit(self) -> None:
        if self.pending:
            self.rev += 1
            self.pending = []

    # -- operations, mirroring etcd's semantics ----------------------------------------
    def range(self, r: RangeRequest) -> tuple[list[KV], bool, int]:
        cur = self.view()
        rev = r.revision
        if rev > cur:
            raise FutureRevisionError()
        if rev <= 0:
            rev = cur
        if rev < self.compact:
            raise CompactedError()
        kvs = [kv for k in self.keys_in(r.key, r.range_end) if (kv := self.at(k, rev))]
        count = len(kvs)
        if r.count_only:
            return [], False, count
        order, target = int(r.sort_order), int(r.sort_target)
        filtered = any(
            (r.min_mod_revision, r.max_mod_revision, r.min_create_revision, r.max_create_revision)
        )
        if r.limit > 0 and order == 0 and not filtered:
            kvs = kvs[: r.limit + 1]
        kvs = [
            kv
            for kv in kvs
            if not (r.max_mod_revision and kv[2] > r.max_mod_revision)
            and not (r.min_mod_revision and kv[2] < r.min_mod_revision)
            and not (r.max_create_revision and kv[1] > r.max_create_revision)
            and not (r.min_create_revision and kv[1] < r.min_create_revision)
        ]
        if target != 0 and order == 0:
            order = 1
        if not (target == 0 and order in (0, 1)):
            idx = {0: 0, 1: 3, 2: 1, 3: 2, 4: 4}[target]
            kvs = sorted(kvs, key=lambda kv: kv[idx], reverse=order == 2)
        more = False
        if r.limit > 0 and len(kvs) > r.limit:
            kvs, more = kvs[: r.limit], True
        if r.keys_only:
            kvs = [(k, c, m, v, b"", le) for (k, c, m, v, _, le) in kvs]
        return kvs, more, count

    def put(self, p: PutRequest) -> KV | None:
        prev = self.at(p.key, self.view())
        value = prev[4] if p.ignore_value and prev else p.value
        lease = prev[5] if p.ignore_lease and prev else p.lease
        mod = self.rev + 1
        if prev is None:
            kv: KV = (p.key, mod, mod, 1, value, lease)
        else:
            kv = (p.key, prev[1], mod, prev[3] + 1, value, lease)
        self.write(p.key, kv)
        return prev

    def delete(self, d: DeleteRangeRequest) -> list[KV]:
        cur = self.view()
        victims = [kv for k in self.keys_in(d.key, d.range_end) if (kv := self.at(k, cur))]
        for kv in victims:
            self.write(kv[0], None)
        return victims

    def compare(self, c: Compare) -> bool:
        cur = self.rev
        kvs = [kv for k in self.keys_in(c.key, c.range_end) if (kv := self.at(k, cur))]
        target, op = int(c.target), int(c.result)
        if not kvs:
            if target == 3:
                return False
            kvs = [(c.key, 0, 0, 0, b"", 0)]
        for kv in kvs:
            if target == 3:  # the value: bytes
                av, bv = kv[4], c.value if c.value is not None else b""
                res = (av > bv) - (av < bv)
            else:  # version, create/mod revision, lease: ints
                ai = {0: kv[3], 1: kv[1], 2: kv[2], 4: kv[5]}[target]
                bi = {
                    0: c.version,
                    1: c.create_revision,
                    2: c.mod_revision,
                    4: c.lease,
                }[target]
                bi = bi if bi is not None else 0
                res = (ai > bi) - (ai < bi)
            ok = {0: res == 0, 1: res > 0, 2: res < 0, 3: res != 0}[op]
            if not ok:
                return False
        return True


def dup_writes(ops: list[RequestOp]) -> tuple[set[bytes], set[bytes]]:
    """(puts, keys covered by deletes) of a branch, raising DuplicateKeyError by etcd's rules.

    Keys come from a small universe, so a delete range is the set of universe keys it covers
    (a "\\x00" range_end is taken literally by etcd and covers nothing).
    """
    universe = set(KEYS)
    dels: set[bytes] = set()
    for op in ops:
        if op.request_delete_range is not None:
            d = op.request_delete_range
            if not d.range_end:
                dels.add(d.key)
            else:
                dels |= {k for k in universe if d.key <= k < d.range_end}
    puts: set[bytes] = set()
    for op in ops:
        if op.request_txn is not None:
            pt, dt = dup_writes(op.request_txn.success)
            pe, de = dup_writes(op.request_txn.failure)
            for k in pt:
                if k in puts or k in dels:
                    raise DuplicateKeyError()
                puts.add(k)
            for k in pe:
                if (k in puts and k not in pt) or k in dels:
                    raise DuplicateKeyError()
                puts.add(k)
            dels |= dt | de
    for op in ops:
        if op.request_put is not None:
            k = op.request_put.key
            if k in puts or k in dels:
                raise DuplicateKeyError()
            puts.add(k)
    return puts, dels


# ------------------------------------------------------------------ strategies
keys = st.sampled_from(KEYS)
ends = st.sampled_from(ENDS)


@st.composite
def range_reqs(draw: st.DrawFn, max_rev: int = 40) -> RangeRequest:
    return RangeRequest(
        key=draw(keys),
        range_end=draw(ends),
        limit=draw(st.sampled_from([0, 0, 1, 2, 3])),
        revision=draw(st.sampled_from([0, 0, 0, -1]) | st.integers(1, max_rev)),
        sort_order=RangeRequestSortOrder(draw(st.integers(0, 2))),
        sort_target=RangeRequestSortTarget(draw(st.integers(0, 4))),
        keys_only=draw(st.booleans()),
        count_only=draw(st.sampled_from([False, False, False, True])),
        min_mod_revision=draw(st.sampled_from([0, 0, 0, 3, 6])),
        max_mod_revision=draw(st.sampled_from([0, 0, 0, 5, 12])),
        min_create_revision=draw(st.sampled_from([0, 0, 0, 2, 4])),
        max_create_revision=draw(st.sampled_from([0, 0, 0, 8])),
    )


@st.composite
def put_reqs(draw: st.DrawFn) -> PutRequest:
    ignore_value = draw(st.sampled_from([False, False, False, True]))
    ignore_lease = draw(st.sampled_from([False, False, False, True]))
    return PutRequest(
        key=draw(keys),
        value=b"" if ignore_value else draw(st.sampled_from(VALUES)),
        lease=0 if ignore_lease else draw(st.sampled_from(LEASES)),
        prev_kv=draw(st.booleans()),
        ignore_value=ignore_value,
        ignore_lease=ignore_lease,
    )


@st.composite
def delete_reqs(draw: st.DrawFn) -> DeleteRangeRequest:
    return DeleteRangeRequest(key=draw(keys), range_end=draw(ends), prev_kv=draw(st.booleans()))


@st.composite
def compares(draw: st.DrawFn) -> Compare:
    target = draw(st.integers(0, 4))
    c = Compare(
        result=CompareCompareResult(draw(st.integers(0, 3))),
        target=CompareCompareTarget(target),
        key=draw(keys),
        range_end=draw(st.sampled_from([b"", b"", b"", b"c", b"\x00"])),
    )
    n = draw(st.integers(0, 12))
    if target == 0:
        c.version = n % 4
    elif target == 1:
        c.create_revision = n
    elif target == 2:
        c.mod_revision = n
    elif target == 3:
        c.value = draw(st.sampled_from(VALUES))
    else:
        c.lease = draw(st.sampled_from(LEASES))
    return c


def ops(depth: int) -> st.SearchStrategy[list[RequestOp]]:
    choices = [
        range_reqs().map(lambda r: RequestOp(request_range=r)),
        put_reqs().map(lambda r: RequestOp(request_put=r)),
        put_reqs().map(lambda r: RequestOp(request_put=r)),
        delete_reqs().map(lambda r: RequestOp(request_delete_range=r)),
    ]
    if depth > 0:
        choices.append(txn_reqs(depth - 1).map(lambda t: RequestOp(request_txn=t)))
    return st.lists(st.one_of(*choices), max_size=3)


def txn_reqs(depth: int = 1) -> st.SearchStrategy[TxnRequest]:
    return st.builds(
        TxnRequest,
        compare=st.lists(compares(), max_size=2),
        success=ops(depth),
        failure=ops(depth),
    )


# ------------------------------------------------------------------ the machine
def kvs_of(msgs: Sequence[KeyValue]) -> list[KV]:
    return [(m.key, m.create_revision, m.mod_revision, m.version, m.value, m.lease) for m in msgs]


class StoreMachine(RuleBasedStateMachine):
    """Drive a KVStore and a Model with the same requests; compare every answer."""

    @initialize()
    def setup(self) -> None:
        self.store = KVStore()
        self.store.lease_exists = LIVE_LEASES.__contains__
        self.model = Model()
        self.notified: list[int] = []
        self.store.add_listener(self.notified.append)

    def expect_same_error(
        self, exc: type[CoordError], fn: Callable[..., object], *args: object
    ) -> None:
        with pytest.raises(CoordError) as info:
            fn(*args)
        assert type(info.value) is exc, (info.value, exc)

    def check_bump(self, before: int) -> None:
        assert self.store.rev == self.model.rev
        if self.store.rev != before:
            assert self.notified[-1] == self.store.rev
            assert self.store.rev == before + 1

    # -- rules ------------------------------------------------------------------------
    @rule(r=range_reqs())
    def do_range(self, r: RangeRequest) -> None:
        try:
            kvs, more, count = self.model.range(r)
        except CoordError as e:
            self.expect_same_error(type(e), self.store.range, r)
            return
        got = RangeResponse.parse(self.store.range(r))
        assert kvs_of(got.kvs) == kvs
        assert got.more == more
        assert got.count == count

    @rule(p=put_reqs())
    def do_put(self, p: PutRequest) -> None:
        before = self.store.rev
        if p.lease and p.lease not in LIVE_LEASES:
            self.expect_same_error(LeaseNotFoundError, self.store.put, p)
            return
        if (p.ignore_value or p.ignore_lease) and self.model.at(p.key, before) is None:
            self.expect_same_error(KeyNotFoundError, self.store.put, p)
            return
        got = PutResponse.parse(self.store.put(p))
        prev = self.model.put(p)
        self.model.commit()
        if p.prev_kv and prev:
            assert got.prev_kv is not None
            assert kvs_of([got.prev_kv]) == [prev]
        else:
            assert got.prev_kv is None
        self.check_bump(before)

    @rule(d=delete_reqs())
    def do_delete(self, d: DeleteRangeRequest) -> None:
        before = self.store.rev
        got = DeleteRangeResponse.parse(self.store.delete_range(d))
        victims = self.model.delete(d)
        self.model.commit()
        assert got.deleted == len(victims)
        assert kvs_of(got.prev_kvs) == (victims if d.prev_kv else [])
        self.check_bump(before)

    @rule(ks=st.lists(keys, max_size=4))
    def do_delete_keys(self, ks: list[bytes]) -> None:
        before = self.store.rev
        self.store.delete_keys(ks)
        for k in sorted(set(ks)):
            if self.model.at(k, self.model.view()):
                self.model.write(k, None)
        self.model.commit()
        self.check_bump(before)

    @rule(t=txn_reqs())
    def do_txn(self, t: TxnRequest) -> None:
        before = self.store.rev
        try:
            dup_writes(t.success)
            dup_writes(t.failure)
        except DuplicateKeyError:
            self.expect_same_error(DuplicateKeyError, self.store.txn, t)
            return
        err = self.txn_state_error(t)
        if err is not None:
            self.expect_same_error(err, self.store.txn, t)
            assert self.store.rev == before
            return
        got = TxnResponse.parse(self.store.txn(t))
        self.check_txn(t, got)
        self.model.commit()
        self.check_bump(before)

    def txn_state_error(self, t: TxnRequest) -> type[CoordError] | None:
        """etcd's checkRequests: puts of the taken path first, then ranges."""
        path = self.taken(t)
        for p in (op.request_put for op in path if op.request_put is not None):
            exists = self.model.at(p.key, self.model.rev) is not None
            if (p.ignore_value or p.ignore_lease) and not exists:
                return KeyNotFoundError
            if p.lease and p.lease not in LIVE_LEASES:
                return LeaseNotFoundError
        for r in (op.request_range for op in path if op.request_range is not None):
            if r.revision > self.model.rev:
                return FutureRevisionError
            if r.revision != 0 and r.revision < (self.model.compact or -1):
                return CompactedError
        return None

    def taken(self, t: TxnRequest) -> list[RequestOp]:
        ok = all(self.model.compare(c) for c in t.compare)
        out: list[RequestOp] = []
        for op in t.success if ok else t.failure:
            if op.request_txn is not None:
                out += self.taken(op.request_txn)
            else:
                out.append(op)
        return out

    def check_txn(self, t: TxnRequest, got: TxnResponse) -> None:
        ok = all(self.model.compare(c) for c in t.compare)
        # nested compares are evaluated against the pre-txn state: decide them all first
        decisions = self.decide(t)
        self.run_txn(t, got, decisions)
        assert got.succeeded == ok

    def decide(self, t: TxnRequest) -> list[bool]:
        ok = all(self.model.compare(c) for c in t.compare)
        out = [ok]
        for op in t.success if ok else t.failure:
            if op.request_txn is not None:
                out += self.decide(op.request_txn)
        return out

    def run_txn(self, t: TxnRequest, got: TxnResponse, decisions: list[bool]) -> None:
        ok = decisions.pop(0)
        assert got.succeeded == ok
        branch = t.success if ok else t.failure
        assert len(got.responses) == len(branch)
        for op, resp in zip(branch, got.responses):
            self.run_op(op, resp, decisions)

    def run_op(self, op: RequestOp, resp: ResponseOp, decisions: list[bool]) -> None:
        m = self.model
        if op.request_range is not None:
            rr = resp.response_range
            assert rr is not None
            assert rr.header is not None
            assert rr.header.revision == m.view()
            kvs, more, count = m.range(op.request_range)
            assert kvs_of(rr.kvs) == kvs
            assert (rr.more, rr.count) == (more, count)
        elif op.request_put is not None:
            pr = resp.response_put
            assert pr is not None
            assert pr.header is not None
            assert pr.header.revision == m.rev + 1
            prev = m.put(op.request_put)
            if op.request_put.prev_kv and prev:
                assert pr.prev_kv is not None
                assert kvs_of([pr.prev_kv]) == [prev]
            else:
                assert pr.prev_kv is None
        elif op.request_delete_range is not None:
            dr = resp.response_delete_range
            assert dr is not None
            victims = m.delete(op.request_delete_range)
            assert dr.header is not None
            assert dr.header.revision == m.view()
            assert dr.deleted == len(victims)
            assert kvs_of(dr.prev_kvs) == (victims if op.request_delete_range.prev_kv else [])
        else:
            assert op.request_txn is not None
            tr = resp.response_txn
            assert tr is not None
            self.run_txn(op.request_txn, tr, decisions)

    @precondition(lambda self: self.store.rev > 1)
    @rule(data=st.data())
    def do_compact(self, data: st.DataObject) -> None:
        rev = data.draw(st.integers(0, self.store.rev + 2))
        if rev <= self.model.compact:
            self.expect_same_error(CompactedError, self.store.compact, rev)
        elif rev > self.model.rev:
            self.expect_same_error(FutureRevisionError, self.store.compact, rev)
        else:
            before = self.store.rev
            self.store.compact(rev)
            self.model.compact = rev
            assert self.store.rev == before
            # history at and after the compaction revision is intact
            for r in range(rev, self.store.rev + 1):
                for k in KEYS:
                    v = self.store.get(k, r)
                    exp = self.model.at(k, r)
                    got = (
                        None
                        if v is None
                        else (v.key, v.create_revision, v.mod_revision, v.version, v.value, v.lease)
                    )
                    assert got == exp
            if rev > 1:
                with pytest.raises(CompactedError):
                    self.store.hash_kv(rev - 1)
            assert self.store.hash_kv(0)[1:] == (rev, self.store.rev)

    @rule()
    def do_snapshot_restore(self) -> None:
        data = self.store.snapshot()
        other = KVStore.restore(data)
        other._check()
        assert other.hash() == self.store.hash()
        assert other.rev == self.store.rev
        assert other.compact_rev == self.store.compact_rev
        assert other.db_size() == self.store.db_size()
        everything = RangeRequest(key=b"\x00", range_end=b"\x00")
        assert other.range(everything) == self.store.range(everything)
        for lease in LIVE_LEASES:
            assert other.keys_for_lease(lease) == self.store.keys_for_lease(lease)

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "store"):
            return
        self.store._check()
        assert self.store.rev == self.model.rev
        assert self.store.compact_rev == self.model.compact
        for lease in LIVE_LEASES:
            m = self.model
            exp = sorted(k for k in m.hist if (kv := m.at(k, m.rev)) and kv[5] == lease)
            assert self.store.keys_for_lease(lease) == exp


# COORD_MODEL_EXAMPLES=2000 for a long soak; the default keeps the suite fast (~10 s).
StoreMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("COORD_MODEL_EXAMPLES", "60")),
    stateful_step_count=40,
    deadline=None,
)
TestStoreModel = StoreMachine.TestCase
