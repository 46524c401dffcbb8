"""Golden tests: the hand-written codec in coord._kvcodec agrees with betterproto2."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coord import _kvcodec
from coord._pb import etcdserverpb as pb
from coord._pb import mvccpb
from coord.types import EventType, KeyValue, RangeResult

i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
blob = st.binary(max_size=300)


def pb_kv(kv: KeyValue) -> mvccpb.KeyValue:
    return mvccpb.KeyValue(
        key=kv.key,
        value=kv.value,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        lease=kv.lease,
    )


kvs = st.builds(KeyValue, blob, blob, i64, i64, i64, i64)


@settings(max_examples=200, deadline=None)
@given(kvs)
def test_kv_roundtrip(kv: KeyValue) -> None:
    assert _kvcodec.decode_kv(bytes(pb_kv(kv))) == kv


@settings(max_examples=100, deadline=None)
@given(st.lists(kvs, max_size=5), st.booleans(), i64, i64)
def test_range_response(items: list[KeyValue], more: bool, count: int, rev: int) -> None:
    msg = pb.RangeResponse(
        header=pb.ResponseHeader(cluster_id=7, member_id=2**64 - 1, revision=rev, raft_term=3),
        kvs=[pb_kv(kv) for kv in items],
        more=more,
        count=count,
    )
    res = _kvcodec.decode_range(bytes(msg))
    assert (res.kvs, res.more, res.count, res.revision) == (items, more, count, rev)


def test_unknown_fields_are_skipped() -> None:
    kv = KeyValue(b"k", b"v", 1, 2, 3, 4)
    # field 15 varint, field 16 length-delimited, field 17 fixed64, field 18 fixed32
    extra = b"\x78\x96\x01" + b"\x82\x01\x03abc" + b"\x89\x01" + b"\x00" * 8 + b"\x95\x01abcd"
    assert _kvcodec.decode_kv(bytes(pb_kv(kv)) + extra) == kv
    rr = bytes(pb.RangeResponse(kvs=[pb_kv(kv)], count=1)) + extra
    assert _kvcodec.decode_range(rr).kvs == [kv]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0, 1]), kvs, st.none() | kvs), max_size=4),
    i64,
    i64,
    st.booleans(),
    st.booleans(),
    i64,
    st.text(max_size=20),
    st.booleans(),
)
def test_watch_response(
    events: list[tuple[int, KeyValue, KeyValue | None]],
    rev: int,
    watch_id: int,
    created: bool,
    canceled: bool,
    compact: int,
    reason: str,
    fragment: bool,
) -> None:
    msg = pb.WatchResponse(
        header=pb.ResponseHeader(revision=rev),
        watch_id=watch_id,
        created=created,
        canceled=canceled,
        compact_revision=compact,
        cancel_reason=reason,
        fragment=fragment,
        events=[
            mvccpb.Event(
                type=mvccpb.EventEventType(t),
                kv=pb_kv(kv),
                prev_kv=pb_kv(p) if p is not None else None,
            )
            for t, kv, p in events
        ],
    )
    raw = _kvcodec.decode_watch(bytes(msg))
    assert raw.revision == rev
    assert raw.watch_id == watch_id
    assert (raw.created, raw.canceled, raw.compact_revision) == (created, canceled, compact)
    assert (raw.cancel_reason, raw.fragment) == (reason, fragment)
    assert [(e.type, e.kv, e.prev_kv) for e in raw.events] == [
        (EventType(t), kv, p) for t, kv, p in events
    ]


def test_put_delete_txn_responses() -> None:
    kv = KeyValue(b"k", b"v", 5, 6, 2, 0)
    put = pb.PutResponse(header=pb.ResponseHeader(revision=9), prev_kv=pb_kv(kv))
    assert _kvcodec.decode_put(bytes(put)) == (9, kv)
    assert _kvcodec.decode_put(bytes(pb.PutResponse(header=pb.ResponseHeader(revision=3)))) == (
        3,
        None,
    )
    dr = pb.DeleteRangeResponse(
        header=pb.ResponseHeader(revision=10), deleted=2, prev_kvs=[pb_kv(kv), pb_kv(kv)]
    )
    assert _kvcodec.decode_delete(bytes(dr)) == (10, 2, [kv, kv])
    inner = pb.TxnResponse(
        header=pb.ResponseHeader(revision=11),
        succeeded=True,
        responses=[
            pb.ResponseOp(response_put=pb.PutResponse(header=pb.ResponseHeader(revision=11)))
        ],
    )
    txn = pb.TxnResponse(
        header=pb.ResponseHeader(revision=11),
        succeeded=False,
        responses=[
            pb.ResponseOp(response_range=pb.RangeResponse(kvs=[pb_kv(kv)], count=1)),
            pb.ResponseOp(response_put=pb.PutResponse(prev_kv=pb_kv(kv))),
            pb.ResponseOp(response_delete_range=pb.DeleteRangeResponse(deleted=1)),
            pb.ResponseOp(response_txn=inner),
            # an explicitly empty RangeResponse is still a range result
            pb.ResponseOp(response_range=pb.RangeResponse()),
        ],
    )
    rev, ok, ops = _kvcodec.decode_txn(bytes(txn))
    assert (rev, ok) == (11, False)
    assert [k for k, _ in ops] == [1, 2, 3, 4, 1]
    first = ops[0][1]
    assert isinstance(first, RangeResult)
    assert first.kvs == [kv]
    assert ops[1][1] == (0, kv)
    assert ops[2][1] == (0, 1, [])
    assert ops[3][1] == (11, True, [(2, (11, None))])


@settings(max_examples=200, deadline=None)
@given(
    blob,
    blob,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_encode_put(key: bytes, value: bytes, lease: int, prev: bool, iv: bool, il: bool) -> None:
    expected = bytes(
        pb.PutRequest(
            key=key, value=value, lease=lease, prev_kv=prev, ignore_value=iv, ignore_lease=il
        )
    )
    assert _kvcodec.encode_put(key, value, lease, prev, iv, il) == expected


@settings(max_examples=200, deadline=None)
@given(
    blob,
    blob,
    st.lists(i64, min_size=6, max_size=6),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.sampled_from([0, 1, 2]),
    st.sampled_from([0, 1, 2, 3, 4]),
)
def test_encode_range(
    key: bytes, end: bytes, nums: list[int], flags: list[bool], order: int, target: int
) -> None:
    limit, revision, a, b, c, d = nums
    expected = bytes(
        pb.RangeRequest(
            key=key,
            range_end=end,
            limit=limit,
            revision=revision,
            sort_order=pb.RangeRequestSortOrder(order),
            sort_target=pb.RangeRequestSortTarget(target),
            serializable=flags[0],
            keys_only=flags[1],
            count_only=flags[2],
            min_mod_revision=a,
            max_mod_revision=b,
            min_create_revision=c,
            max_create_revision=d,
        )
    )
    assert (
        _kvcodec.encode_range(
            key, end, limit, revision, order, target, flags[0], flags[1], flags[2], a, b, c, d
        )
        == expected
    )


@pytest.mark.parametrize("prev", [False, True])
def test_encode_delete(prev: bool) -> None:
    for key, end in [(b"a", b""), (b"a" * 200, b"b" * 300), (b"", b"\x00")]:
        expected = bytes(pb.DeleteRangeRequest(key=key, range_end=end, prev_kv=prev))
        assert _kvcodec.encode_delete(key, end, prev) == expected
