"""Unit tests of KVStore: one test per etcd rule or error: etcd's semantics and errors."""

from __future__ import annotations

from typing import Any

import pytest
from unwrap import unwrap

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
    TxnRequest,
    TxnResponse,
)
from coord.errors import (
    CompactedError,
    DuplicateKeyError,
    EmptyKeyError,
    FutureRevisionError,
    InvalidSortOptionError,
    KeyNotFoundError,
    LeaseNotFoundError,
    LeaseProvidedError,
    ValueProvidedError,
)
from coord.server.mvcc import KVStore

R = CompareCompareResult
T = CompareCompareTarget
ASC, DESC = RangeRequestSortOrder.ASCEND, RangeRequestSortOrder.DESCEND


@pytest.fixture
def s() -> KVStore:
    store = KVStore()
    store.lease_exists = {5, 7}.__contains__
    return store


def rng(s: KVStore, key: bytes, end: bytes = b"", **kw: Any) -> RangeResponse:
    return RangeResponse.parse(s.range(RangeRequest(key=key, range_end=end, **kw)))


def keys(resp: RangeResponse) -> list[bytes]:
    return [kv.key for kv in resp.kvs]


def put(s: KVStore, key: bytes, value: bytes = b"", **kw: Any) -> PutResponse:
    return PutResponse.parse(s.put(PutRequest(key=key, value=value, **kw)))


def delete(s: KVStore, key: bytes, end: bytes = b"", **kw: Any) -> DeleteRangeResponse:
    req = DeleteRangeRequest(key=key, range_end=end, **kw)
    return DeleteRangeResponse.parse(s.delete_range(req))


def txn(
    s: KVStore,
    compare: list[Compare] | None = None,
    success: list[RequestOp] | None = None,
    failure: list[RequestOp] | None = None,
) -> TxnResponse:
    req = TxnRequest(compare=compare or [], success=success or [], failure=failure or [])
    return TxnResponse.parse(s.txn(req))


def op_put(key: bytes, value: bytes = b"", **kw: Any) -> RequestOp:
    return RequestOp(request_put=PutRequest(key=key, value=value, **kw))


def op_del(key: bytes, end: bytes = b"") -> RequestOp:
    return RequestOp(request_delete_range=DeleteRangeRequest(key=key, range_end=end))


def op_range(key: bytes, end: bytes = b"", **kw: Any) -> RequestOp:
    return RequestOp(request_range=RangeRequest(key=key, range_end=end, **kw))


def op_txn(**kw: Any) -> RequestOp:
    return RequestOp(request_txn=TxnRequest(**kw))


def fill(s: KVStore, *ks: bytes) -> None:
    for k in ks:
        put(s, k, b"v" + k)


# ------------------------------------------------------------------ revisions, versions
def test_fresh_store_is_at_revision_one(s: KVStore) -> None:
    assert (s.rev, s.compact_rev) == (1, 0)
    assert rng(s, b"\x00", b"\x00").count == 0
    s._check()


def test_put_sets_create_mod_version(s: KVStore) -> None:
    put(s, b"k", b"1")
    put(s, b"k", b"2")
    put(s, b"k", b"2")  # same value still bumps version
    kv = rng(s, b"k").kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 4, 3, b"2")
    assert s.rev == 4


def test_delete_then_put_starts_new_generation(s: KVStore) -> None:
    put(s, b"k", b"1")
    assert delete(s, b"k").deleted == 1
    assert rng(s, b"k").kvs == []
    put(s, b"k", b"2")
    kv = rng(s, b"k").kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version) == (4, 4, 1)
    s._check()


def test_noop_delete_does_not_bump(s: KVStore) -> None:
    seen: list[int] = []
    s.add_listener(seen.append)
    put(s, b"a")
    assert delete(s, b"zz").deleted == 0
    assert delete(s, b"b", b"c").deleted == 0
    assert s.rev == 2
    assert seen == [2]


def test_read_only_txn_does_not_bump(s: KVStore) -> None:
    put(s, b"a")
    resp = txn(s, success=[op_range(b"a")])
    assert resp.succeeded
    assert s.rev == 2
    assert unwrap(unwrap(resp.responses[0].response_range).header).revision == 2


# ------------------------------------------------------------------ ranges
def test_range_forms(s: KVStore) -> None:
    fill(s, b"a", b"ab", b"abc", b"b", b"c\x00", b"\xff")
    assert keys(rng(s, b"ab")) == [b"ab"]
    assert keys(rng(s, b"a", b"b")) == [b"a", b"ab", b"abc"]
    assert keys(rng(s, b"ab", b"ac")) == [b"ab", b"abc"]  # prefix "ab"
    assert keys(rng(s, b"b", b"\x00")) == [b"b", b"c\x00", b"\xff"]  # all keys >= key
    assert len(rng(s, b"\x00", b"\x00").kvs) == 6  # everything
    assert rng(s, b"c", b"b").kvs == []  # end <= key: nothing, no error
    assert rng(s, b"b", b"b").count == 0


def test_range_limit_more_count(s: KVStore) -> None:
    fill(s, b"a", b"b", b"c", b"d")
    r = rng(s, b"a", b"z", limit=2)
    assert keys(r) == [b"a", b"b"]
    assert (r.more, r.count) == (True, 4)
    r = rng(s, b"a", b"z", limit=4)
    assert (r.more, r.count) == (False, 4)
    r = rng(s, b"a", b"z", limit=2, min_mod_revision=3)  # filters do not change count
    assert keys(r) == [b"b", b"c"]
    assert (r.more, r.count) == (True, 4)


def test_range_count_only_and_keys_only(s: KVStore) -> None:
    fill(s, b"a", b"b")
    r = rng(s, b"a", b"z", count_only=True)
    assert (r.kvs, r.count, r.more) == ([], 2, False)
    r = rng(s, b"a", b"z", keys_only=True)
    assert [(kv.key, kv.value, kv.version) for kv in r.kvs] == [(b"a", b"", 1), (b"b", b"", 1)]
    assert rng(s, b"a").kvs[0].value == b"va"  # the stored value is untouched


def test_range_sorting(s: KVStore) -> None:
    put(s, b"b", b"3")  # rev 2
    put(s, b"a", b"1")  # rev 3
    put(s, b"c", b"2")  # rev 4
    put(s, b"c", b"2")  # rev 5: c version 2
    tgt = RangeRequestSortTarget
    assert keys(rng(s, b"a", b"z")) == [b"a", b"b", b"c"]
    assert keys(rng(s, b"a", b"z", sort_order=ASC)) == [b"a", b"b", b"c"]
    assert keys(rng(s, b"a", b"z", sort_order=DESC)) == [b"c", b"b", b"a"]
    assert keys(rng(s, b"a", b"z", sort_target=tgt.VALUE)) == [b"a", b"c", b"b"]  # NONE = ASC
    assert keys(rng(s, b"a", b"z", sort_target=tgt.VALUE, sort_order=DESC)) == [
        b"b",
        b"c",
        b"a",
    ]
    assert keys(rng(s, b"a", b"z", sort_target=tgt.CREATE)) == [b"b", b"a", b"c"]
    assert keys(rng(s, b"a", b"z", sort_target=tgt.MOD, sort_order=DESC)) == [b"c", b"a", b"b"]
    assert keys(rng(s, b"a", b"z", sort_target=tgt.VERSION, sort_order=DESC))[0] == b"c"
    # lock-recipe style: first created key under a prefix
    r = rng(s, b"a", b"z", sort_target=tgt.CREATE, sort_order=ASC, limit=1)
    assert (keys(r), r.more, r.count) == ([b"b"], True, 3)


def test_invalid_sort_option(s: KVStore) -> None:
    for raw in (bytes([0x0A, 1, 0x61, 0x28, 7]), bytes([0x0A, 1, 0x61, 0x30, 9])):
        with pytest.raises(InvalidSortOptionError):
            s.range(RangeRequest.parse(raw))


def test_range_at_past_revision_and_errors(s: KVStore) -> None:
    put(s, b"k", b"1")  # 2
    put(s, b"k", b"2")  # 3
    delete(s, b"k")  # 4
    assert rng(s, b"k", revision=2).kvs[0].value == b"1"
    assert rng(s, b"k", revision=3).kvs[0].value == b"2"
    assert rng(s, b"k", revision=4).kvs == []
    assert rng(s, b"k", revision=1).kvs == []
    with pytest.raises(FutureRevisionError):
        s.range(RangeRequest(key=b"k", revision=5))
    s.compact(3)
    with pytest.raises(CompactedError):
        s.range(RangeRequest(key=b"k", revision=2))
    assert rng(s, b"k", revision=3).kvs[0].value == b"2"  # reading at the compaction rev is ok


def test_min_max_filters(s: KVStore) -> None:
    fill(s, b"a", b"b", b"c")  # revs 2, 3, 4
    put(s, b"a", b"x")  # a: create 2, mod 5
    assert keys(rng(s, b"a", b"z", min_mod_revision=4)) == [b"a", b"c"]
    assert keys(rng(s, b"a", b"z", max_mod_revision=3)) == [b"b"]
    assert keys(rng(s, b"a", b"z", min_create_revision=3)) == [b"b", b"c"]
    assert keys(rng(s, b"a", b"z", max_create_revision=2)) == [b"a"]


def test_empty_key_errors(s: KVStore) -> None:
    with pytest.raises(EmptyKeyError):
        s.range(RangeRequest())
    with pytest.raises(EmptyKeyError):
        s.put(PutRequest(value=b"x"))
    with pytest.raises(EmptyKeyError):
        s.delete_range(DeleteRangeRequest())
    with pytest.raises(EmptyKeyError):
        s.txn(TxnRequest(compare=[Compare()]))


# ------------------------------------------------------------------ put options, leases
def test_put_prev_kv(s: KVStore) -> None:
    assert put(s, b"k", b"1", prev_kv=True).prev_kv is None
    prev = put(s, b"k", b"2", prev_kv=True).prev_kv
    assert prev is not None
    assert (prev.value, prev.mod_revision) == (b"1", 2)
    assert put(s, b"k", b"3").prev_kv is None  # not asked


def test_ignore_value_and_ignore_lease(s: KVStore) -> None:
    put(s, b"k", b"v", lease=5)
    put(s, b"k", ignore_value=True, lease=7)
    kv = rng(s, b"k").kvs[0]
    assert (kv.value, kv.lease) == (b"v", 7)
    put(s, b"k", b"w", ignore_lease=True)
    kv = rng(s, b"k").kvs[0]
    assert (kv.value, kv.lease) == (b"w", 7)
    with pytest.raises(KeyNotFoundError):
        s.put(PutRequest(key=b"missing", ignore_value=True))
    with pytest.raises(KeyNotFoundError):
        s.put(PutRequest(key=b"missing", ignore_lease=True))
    with pytest.raises(ValueProvidedError):
        s.put(PutRequest(key=b"k", value=b"x", ignore_value=True))
    with pytest.raises(LeaseProvidedError):
        s.put(PutRequest(key=b"k", lease=5, ignore_lease=True))
    assert s.rev == 4


def test_unknown_lease(s: KVStore) -> None:
    with pytest.raises(LeaseNotFoundError):
        s.put(PutRequest(key=b"k", lease=99))
    with pytest.raises(LeaseNotFoundError):  # lease is checked before ignore_value
        s.put(PutRequest(key=b"missing", lease=99, ignore_value=True))
    assert s.rev == 1


def test_lease_attach_move_detach_and_revoke(s: KVStore) -> None:
    put(s, b"a", lease=5)
    put(s, b"b", lease=5)
    put(s, b"c", lease=7)
    assert s.keys_for_lease(5) == [b"a", b"b"]
    put(s, b"b", lease=7)  # moves
    put(s, b"c")  # detaches
    assert (s.keys_for_lease(5), s.keys_for_lease(7)) == ([b"a"], [b"b"])
    seen: list[int] = []
    s.add_listener(seen.append)
    rev = s.rev
    s.delete_keys([b"b", b"a", b"zz"])
    assert s.rev == rev + 1
    assert seen == [rev + 1]
    assert [v.key for v in s.changes(rev + 1)] == [b"a", b"b"]  # one revision, key order
    assert s.keys_for_lease(5) == []
    s.delete_keys([b"a", b"nothing"])
    assert s.rev == rev + 1  # nothing deleted: no bump
    s._check()


def test_delete_prev_kvs(s: KVStore) -> None:
    fill(s, b"a", b"b", b"c")
    r = delete(s, b"a", b"c", prev_kv=True)
    assert r.deleted == 2
    assert [(kv.key, kv.value) for kv in r.prev_kvs] == [(b"a", b"va"), (b"b", b"vb")]
    assert delete(s, b"c").prev_kvs == []


# ------------------------------------------------------------------ txn
def cmp(key: bytes, target: T, result: R, **kw: Any) -> Compare:
    return Compare(key=key, target=target, result=result, **kw)


def holds(s: KVStore, *cs: Compare) -> bool:
    return txn(s, compare=list(cs)).succeeded


def test_compare_every_target_and_result(s: KVStore) -> None:
    put(s, b"k", b"m", lease=5)  # create 2
    put(s, b"k", b"m", lease=5)  # mod 3, version 2
    cases = [
        (T.VERSION, "version", 2),
        (T.CREATE, "create_revision", 2),
        (T.MOD, "mod_revision", 3),
        (T.LEASE, "lease", 5),
        (T.VALUE, "value", b"m"),
    ]
    for target, fname, v in cases:
        lower = v - 1 if isinstance(v, int) else b"a"
        higher = v + 1 if isinstance(v, int) else b"z"
        assert holds(s, cmp(b"k", target, R.EQUAL, **{fname: v}))
        assert not holds(s, cmp(b"k", target, R.EQUAL, **{fname: lower}))
        assert holds(s, cmp(b"k", target, R.NOT_EQUAL, **{fname: lower}))
        assert not holds(s, cmp(b"k", target, R.NOT_EQUAL, **{fname: v}))
        assert holds(s, cmp(b"k", target, R.GREATER, **{fname: lower}))
        assert not holds(s, cmp(b"k", target, R.GREATER, **{fname: v}))
        assert holds(s, cmp(b"k", target, R.LESS, **{fname: higher}))
        assert not holds(s, cmp(b"k", target, R.LESS, **{fname: v}))
    assert s.rev == 3


def test_compare_missing_key(s: KVStore) -> None:
    assert holds(s, cmp(b"nope", T.VERSION, R.EQUAL, version=0))
    assert holds(s, cmp(b"nope", T.CREATE, R.EQUAL, create_revision=0))
    assert holds(s, cmp(b"nope", T.MOD, R.LESS, mod_revision=1))
    assert holds(s, cmp(b"nope", T.LEASE, R.EQUAL, lease=0))
    # VALUE compares on missing keys are always false, whatever the operator
    assert not holds(s, cmp(b"nope", T.VALUE, R.EQUAL, value=b""))
    assert not holds(s, cmp(b"nope", T.VALUE, R.NOT_EQUAL, value=b"x"))
    # unset oneof member counts as 0
    assert holds(s, cmp(b"nope", T.VERSION, R.EQUAL))


def test_compare_over_a_range(s: KVStore) -> None:
    fill(s, b"p/a", b"p/b")
    assert holds(s, cmp(b"p/", T.VERSION, R.EQUAL, version=1, range_end=b"p0"))
    put(s, b"p/b", b"x")
    assert not holds(s, cmp(b"p/", T.VERSION, R.EQUAL, version=1, range_end=b"p0"))
    assert holds(s, cmp(b"p/", T.VERSION, R.GREATER, version=0, range_end=b"p0"))
    assert holds(s, cmp(b"q", T.CREATE, R.EQUAL, create_revision=0, range_end=b"\x00"))
    assert not holds(s, cmp(b"p/0", T.VALUE, R.GREATER, value=b"", range_end=b"p/1"))  # no keys
    assert holds(s, cmp(b"p/", T.VALUE, R.GREATER, value=b"", range_end=b"p0"))


def test_txn_branches_one_revision_and_read_your_writes(s: KVStore) -> None:
    put(s, b"x", b"0")  # 2
    put(s, b"w", b"0")  # 3
    resp = txn(
        s,
        compare=[cmp(b"x", T.VALUE, R.EQUAL, value=b"0")],
        success=[
            op_put(b"x", b"1"),
            op_put(b"y", b"2"),
            op_range(b"w", b"z"),
            op_del(b"w"),
            op_range(b"w", b"z"),
        ],
        failure=[op_put(b"never")],
    )
    assert resp.succeeded
    assert s.rev == 4
    r1 = unwrap(resp.responses[2].response_range)
    got = [(kv.key, kv.value, kv.mod_revision) for kv in r1.kvs]
    assert got == [(b"w", b"0", 3), (b"x", b"1", 4), (b"y", b"2", 4)]
    assert unwrap(r1.header).revision == 4
    assert keys(unwrap(resp.responses[4].response_range)) == [b"x", b"y"]
    assert unwrap(unwrap(resp.responses[0].response_put).header).revision == 4
    assert unwrap(resp.responses[3].response_delete_range).deleted == 1
    assert [v.key for v in s.changes(4)] == [b"x", b"y", b"w"]
    assert rng(s, b"never").kvs == []
    resp = txn(s, compare=[cmp(b"x", T.VALUE, R.EQUAL, value=b"0")], failure=[op_range(b"x")])
    assert not resp.succeeded
    assert unwrap(resp.responses[0].response_range).kvs[0].value == b"1"
    assert s.rev == 4


def test_nested_txn(s: KVStore) -> None:
    put(s, b"a", b"1")
    resp = txn(
        s,
        success=[
            op_put(b"b", b"2"),
            op_txn(
                compare=[cmp(b"b", T.VERSION, R.EQUAL, version=0)],  # pre-txn state: b absent
                success=[op_put(b"c", b"3"), op_range(b"b")],
                failure=[op_put(b"d")],
            ),
        ],
    )
    inner = unwrap(resp.responses[1].response_txn)
    assert inner.succeeded
    assert unwrap(inner.responses[1].response_range).kvs[0].value == b"2"
    assert keys(rng(s, b"a", b"z")) == [b"a", b"b", b"c"]
    assert s.rev == 3


def test_duplicate_keys(s: KVStore) -> None:
    bad = [
        [op_put(b"a"), op_put(b"a")],
        [op_put(b"b"), op_del(b"a", b"c")],
        [op_del(b"b"), op_put(b"b")],
        [op_put(b"a"), op_txn(success=[op_put(b"a")])],
        [op_del(b"a", b"z"), op_txn(failure=[op_put(b"k")])],
        [op_txn(success=[op_del(b"k")]), op_put(b"k")],
        [op_txn(success=[op_put(b"k")]), op_txn(failure=[op_put(b"k")])],
    ]
    for ops in bad:
        with pytest.raises(DuplicateKeyError):
            s.txn(TxnRequest(success=ops))
        with pytest.raises(DuplicateKeyError):
            s.txn(TxnRequest(failure=ops))
    ok = [
        [op_del(b"a", b"c"), op_del(b"b")],  # overlapping deletes
        [op_txn(success=[op_put(b"k")], failure=[op_put(b"k")])],  # exclusive branches
        [op_put(b"b"), op_del(b"a", b"\x00")],  # etcd reads "\x00" literally: no conflict
    ]
    for ops in ok:
        s.txn(TxnRequest(success=ops))
    s.txn(TxnRequest(success=[op_put(b"k")], failure=[op_put(b"k")]))  # branches independent
    s._check()


def test_txn_validation_errors(s: KVStore) -> None:
    put(s, b"a")
    with pytest.raises(KeyNotFoundError):  # empty RequestOp
        s.txn(TxnRequest(success=[RequestOp()]))
    with pytest.raises(EmptyKeyError):
        s.txn(TxnRequest(failure=[op_put(b"")]))
    with pytest.raises(InvalidSortOptionError):
        s.txn(
            TxnRequest(success=[RequestOp(request_range=RangeRequest.parse(b"\x0a\x01a\x28\x05"))])
        )
    with pytest.raises(ValueProvidedError):
        s.txn(TxnRequest(success=[op_txn(success=[op_put(b"a", b"x", ignore_value=True)])]))
    # state checks only on the taken branch
    with pytest.raises(LeaseNotFoundError):
        s.txn(TxnRequest(success=[op_put(b"x", lease=42)]))
    s.txn(TxnRequest(success=[op_put(b"x")], failure=[op_put(b"y", lease=42)]))
    with pytest.raises(KeyNotFoundError):
        s.txn(TxnRequest(success=[op_put(b"zz", ignore_lease=True)]))
    with pytest.raises(FutureRevisionError):
        s.txn(TxnRequest(success=[op_put(b"n"), op_range(b"a", revision=s.rev + 1)]))
    rev = s.rev
    s.compact(rev)
    with pytest.raises(CompactedError):
        s.txn(TxnRequest(success=[op_range(b"a", revision=rev - 1)]))
    assert s.rev == rev  # no partial effects
    assert rng(s, b"n").kvs == []


# ------------------------------------------------------------------ compaction
def test_compaction_example_from_the_reference(s: KVStore) -> None:
    put(s, b"x")  # 2 (fills revision 1's slot: foo's history starts at 3)
    put(s, b"foo", b"1")  # 3
    put(s, b"foo", b"2")  # 4
    delete(s, b"foo")  # 5
    put(s, b"foo", b"4")  # 6
    delete(s, b"foo")  # 7

    def revs() -> list[int]:
        return [v.mod_revision for v in s._index.hist.get(b"foo", [])]

    s.compact(4)
    assert revs() == [4, 5, 6, 7]
    s.compact(6)
    assert revs() == [6, 7]
    s.compact(7)
    assert revs() == [7]  # a tombstone at the compaction revision stays (watch from 7 sees it)
    assert rng(s, b"foo", revision=7).kvs == []
    put(s, b"x")  # 8
    s.compact(8)
    assert revs() == []
    assert b"x" in s._index.live
    s._check()


def test_compaction_errors_and_no_bump(s: KVStore) -> None:
    fill(s, b"a", b"b")
    with pytest.raises(FutureRevisionError):
        s.compact(4)
    s.compact(2)
    assert (s.rev, s.compact_rev) == (3, 2)
    with pytest.raises(CompactedError):
        s.compact(2)
    with pytest.raises(CompactedError):
        s.compact(1)
    s.compact(3)


def test_compaction_frees_space_and_keeps_state(s: KVStore) -> None:
    for i in range(50):
        put(s, b"k", b"v" * 100 + str(i).encode())
    before = s.db_size()
    everything = RangeRequest(key=b"\x00", range_end=b"\x00")
    state = s.range(everything)
    s.compact(s.rev)
    assert s.db_size() < before / 10
    assert s.range(everything) == state
    assert len(s._index.hist[b"k"]) == 1
    s._check()


# ------------------------------------------------------------------ hashes, snapshots
def build(ops: int) -> KVStore:
    st = KVStore()
    for i in range(ops):
        st.put(PutRequest(key=b"k%d" % (i % 7), value=b"v%d" % i))
        if i % 5 == 4:
            st.delete_range(DeleteRangeRequest(key=b"k%d" % (i % 3)))
    return st


def test_hash_kv(s: KVStore) -> None:
    a, b = build(40), build(40)
    assert a.hash_kv(0) == b.hash_kv(0)
    assert a.hash() == b.hash()
    assert a.hash_kv(10) == b.hash_kv(10)
    assert a.hash_kv(10)[0] != a.hash_kv(11)[0]
    c = build(41)
    assert c.hash_kv(0) != a.hash_kv(0)
    assert c.hash_kv(a.rev)[0] == a.hash_kv(0)[0]  # same history up to a.rev
    with pytest.raises(FutureRevisionError):
        a.hash_kv(a.rev + 1)
    a.compact(10)
    b.compact(10)
    assert a.hash_kv(0) == b.hash_kv(0)
    assert a.hash_kv(0)[1:] == (10, a.rev)
    with pytest.raises(CompactedError):
        a.hash_kv(9)


def test_snapshot_restore_roundtrip() -> None:
    a = build(60)
    a.put(PutRequest(key=b"leased", value=b"x", lease=0))
    a.lease_exists = lambda _lease: True
    a.put(PutRequest(key=b"leased", value=b"y", lease=12))
    a.compact(20)
    b = KVStore.restore(a.snapshot())
    b._check()
    assert (b.rev, b.compact_rev, b.hash()) == (a.rev, a.compact_rev, a.hash())
    assert b.db_size() == a.db_size()
    assert b.keys_for_lease(12) == [b"leased"]
    for rev in (20, 30, a.rev):
        req = RangeRequest(key=b"\x00", range_end=b"\x00", revision=rev)
        assert b.range(req) == a.range(req)
    with pytest.raises(CompactedError):
        b.range(RangeRequest(key=b"k1", revision=19))
    b.put(PutRequest(key=b"k1", value=b"new"))
    assert b.rev == a.rev + 1
    with pytest.raises(ValueError, match="format"):
        KVStore.restore(b"\x94\x02\x01\x00\x90")


def test_db_size_grows(s: KVStore) -> None:
    before = s.db_size()
    put(s, b"k", b"x" * 1000)
    assert s.db_size() >= before + 1000
