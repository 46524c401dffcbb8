"""Golden tests: the hand-assembled protobuf bytes equal betterproto2's encoding, byte for byte."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from coord._pb.etcdserverpb import (
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeRequestSortOrder,
    RangeResponse,
    RequestOp,
    ResponseHeader,
    ResponseOp,
    TxnRequest,
    TxnResponse,
)
from coord._pb.mvccpb import KeyValue
from coord._protowire import encode_varint as varint
from coord.server.mvcc import KVStore
from coord.server.mvcc.kvencoding import encode_kv

int64s = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(0, 300))


@given(st.integers(-(2**63), 2**64 - 1))
def test_varint_matches_betterproto(n: int) -> None:
    # field 3 of ResponseHeader is int64, field 1 uint64: compare through both
    if n >= 2**63:
        assert b"\x08" + varint(n) == bytes(ResponseHeader(cluster_id=n))
    elif n:
        assert b"\x18" + varint(n) == bytes(ResponseHeader(revision=n))


@settings(max_examples=200)
@given(
    key=st.binary(min_size=1, max_size=200),
    create=int64s,
    mod=int64s,
    version=int64s,
    value=st.binary(max_size=300),
    lease=int64s,
)
def test_keyvalue_encoding(
    key: bytes, create: int, mod: int, version: int, value: bytes, lease: int
) -> None:
    kv = KeyValue(
        key=key, create_revision=create, mod_revision=mod, version=version, value=value, lease=lease
    )
    assert encode_kv(key, create, mod, version, value, lease) == bytes(kv)


def sample_store() -> KVStore:
    s = KVStore()
    s.lease_exists = lambda _lease: True
    for i in range(30):
        s.put(PutRequest(key=b"k%02d" % i, value=b"v" * (i * 7), lease=i % 3))
    s.put(PutRequest(key=b"k05", value=b""))
    s.delete_range(DeleteRangeRequest(key=b"k07"))
    return s


def as_kvs(store: KVStore, key: bytes, end: bytes, rev: int = 0) -> list[KeyValue]:
    out = []
    for v in store._index.iter_at(key, end or None, rev or store.rev):
        out.append(
            KeyValue(
                key=v.key,
                create_revision=v.create_revision,
                mod_revision=v.mod_revision,
                version=v.version,
                value=v.value,
                lease=v.lease,
            )
        )
    return out


def test_range_response_bytes() -> None:
    s = sample_store()
    kvs = as_kvs(s, b"k", b"l")
    assert s.range(RangeRequest(key=b"k", range_end=b"l")) == bytes(
        RangeResponse(kvs=kvs, count=len(kvs))
    )
    assert s.range(RangeRequest(key=b"k", range_end=b"l", limit=3)) == bytes(
        RangeResponse(kvs=kvs[:3], more=True, count=len(kvs))
    )
    desc = s.range(RangeRequest(key=b"k", range_end=b"l", sort_order=RangeRequestSortOrder.DESCEND))
    assert desc == bytes(RangeResponse(kvs=kvs[::-1], count=len(kvs)))
    for kv in kvs:
        kv.value = b""
    assert s.range(RangeRequest(key=b"k", range_end=b"l", keys_only=True)) == bytes(
        RangeResponse(kvs=kvs, count=len(kvs))
    )
    assert s.range(RangeRequest(key=b"k", range_end=b"l", count_only=True)) == bytes(
        RangeResponse(count=len(kvs))
    )
    assert s.range(RangeRequest(key=b"zz")) == bytes(RangeResponse())
    old = as_kvs(s, b"k", b"l", 10)
    assert s.range(RangeRequest(key=b"k", range_end=b"l", revision=10)) == bytes(
        RangeResponse(kvs=old, count=len(old))
    )


def test_put_and_delete_response_bytes() -> None:
    s = sample_store()
    prev = as_kvs(s, b"k03", b"")[0]
    assert s.put(PutRequest(key=b"k03", value=b"new", prev_kv=True)) == bytes(
        PutResponse(prev_kv=prev)
    )
    assert s.put(PutRequest(key=b"fresh", prev_kv=True)) == bytes(PutResponse())
    victims = as_kvs(s, b"k1", b"k2")
    assert s.delete_range(DeleteRangeRequest(key=b"k1", range_end=b"k2", prev_kv=True)) == bytes(
        DeleteRangeResponse(deleted=len(victims), prev_kvs=victims)
    )
    assert s.delete_range(DeleteRangeRequest(key=b"nothing")) == bytes(DeleteRangeResponse())


def test_txn_response_bytes() -> None:
    s = sample_store()
    rev = s.rev
    before = as_kvs(s, b"k00", b"k03")
    prev = as_kvs(s, b"k02", b"")[0]
    req = TxnRequest(
        success=[
            RequestOp(request_range=RangeRequest(key=b"k00", range_end=b"k03")),
            RequestOp(request_put=PutRequest(key=b"k02", value=b"x", prev_kv=True)),
            RequestOp(request_delete_range=DeleteRangeRequest(key=b"k00")),
            RequestOp(request_txn=TxnRequest(failure=[])),
            RequestOp(request_delete_range=DeleteRangeRequest(key=b"none")),
        ]
    )
    got = s.txn(req)
    expected = TxnResponse(
        succeeded=True,
        responses=[
            ResponseOp(
                response_range=RangeResponse(
                    header=ResponseHeader(revision=rev), kvs=before, count=len(before)
                )
            ),
            ResponseOp(
                response_put=PutResponse(header=ResponseHeader(revision=rev + 1), prev_kv=prev)
            ),
            ResponseOp(
                response_delete_range=DeleteRangeResponse(
                    header=ResponseHeader(revision=rev + 1), deleted=1
                )
            ),
            ResponseOp(response_txn=TxnResponse(header=ResponseHeader(), succeeded=True)),
            ResponseOp(
                response_delete_range=DeleteRangeResponse(header=ResponseHeader(revision=rev + 1))
            ),
        ],
    )
    assert got == bytes(expected)
    # a failed, read-only txn: header revisions stay at the current revision
    rev = s.rev
    got = s.txn(
        TxnRequest(
            compare=[],
            success=[RequestOp(request_delete_range=DeleteRangeRequest(key=b"nothing"))],
        )
    )
    assert got == bytes(
        TxnResponse(
            succeeded=True,
            responses=[
                ResponseOp(
                    response_delete_range=DeleteRangeResponse(header=ResponseHeader(revision=rev))
                )
            ],
        )
    )
