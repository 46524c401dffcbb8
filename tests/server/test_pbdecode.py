"""server/pbdecode.py against betterproto2's own parser: the same objects, or the same error.

Random etcd request messages (nested Txns, every Compare target, every RequestOp kind,
negative leases, enums) are encoded by betterproto2 and read back both ways; random and
mutated bytes must give equal objects or the same exception from both.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from coord._pb import etcdserverpb as pb
from coord.server.api.pbcheck import check_message
from coord.server.command import Kind, encode
from coord.server.pbdecode import parse_message, read_message
from coord.server.statemachine import StateMachine

keys = st.binary(max_size=12)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

puts = st.builds(
    pb.PutRequest,
    key=keys,
    value=st.binary(max_size=40),
    lease=i64,
    prev_kv=st.booleans(),
    ignore_value=st.booleans(),
    ignore_lease=st.booleans(),
)
ranges = st.builds(
    pb.RangeRequest,
    key=keys,
    range_end=keys,
    limit=i64,
    revision=i64,
    sort_order=st.sampled_from(list(pb.RangeRequestSortOrder)),
    sort_target=st.sampled_from(list(pb.RangeRequestSortTarget)),
    serializable=st.booleans(),
    keys_only=st.booleans(),
    count_only=st.booleans(),
    min_mod_revision=i64,
    max_create_revision=i64,
)
deletes = st.builds(pb.DeleteRangeRequest, key=keys, range_end=keys, prev_kv=st.booleans())
_target = st.one_of(
    st.builds(dict, version=i64),
    st.builds(dict, create_revision=i64),
    st.builds(dict, mod_revision=i64),
    st.builds(dict, value=st.binary(max_size=8)),
    st.builds(dict, lease=i64),
    st.just({}),
)
compares = st.builds(
    lambda target, result, kind, key, end: pb.Compare(
        result=result, target=kind, key=key, range_end=end, **target
    ),
    _target,
    st.sampled_from(list(pb.CompareCompareResult)),
    st.sampled_from(list(pb.CompareCompareTarget)),
    keys,
    keys,
)


def _ops(txns: st.SearchStrategy[Any]) -> st.SearchStrategy[pb.RequestOp]:
    return st.one_of(
        st.builds(pb.RequestOp, request_put=puts),
        st.builds(pb.RequestOp, request_range=ranges),
        st.builds(pb.RequestOp, request_delete_range=deletes),
        st.builds(pb.RequestOp, request_txn=txns),
        st.just(pb.RequestOp()),
    )


txns = st.recursive(
    st.just(pb.TxnRequest()),
    lambda inner: st.builds(
        pb.TxnRequest,
        compare=st.lists(compares, max_size=3),
        success=st.lists(_ops(inner), max_size=4),
        failure=st.lists(_ops(inner), max_size=3),
    ),
    max_leaves=12,
)
MESSAGES = st.one_of(puts, ranges, deletes, compares, txns, _ops(txns))
CLASSES = [pb.PutRequest, pb.RangeRequest, pb.DeleteRangeRequest, pb.Compare, pb.TxnRequest]


def _both(cls: type, data: bytes) -> None:
    if read_message(cls, data) is not None:  # read by hand: then it passes the strict check
        check_message(data, cls)
    try:
        expected: Any = cls.parse(data)  # type: ignore[attr-defined]
    except Exception as e:
        expected = type(e)
    try:
        got: Any = parse_message(cls, data)
    except Exception as e:
        got = type(e)
    assert got == expected, (cls.__name__, data)


@settings(max_examples=1500, deadline=None)
@given(MESSAGES)
def test_messages_read_back_equal(message: Any) -> None:
    data = bytes(message)
    got = parse_message(type(message), data)
    assert got == type(message).parse(data) == message


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(CLASSES), st.binary(max_size=60))
def test_random_bytes_give_what_betterproto2_gives(cls: type, data: bytes) -> None:
    _both(cls, data)


@settings(max_examples=1500, deadline=None)
@given(txns, st.data())
def test_mutated_messages_give_what_betterproto2_gives(message: Any, data: st.DataObject) -> None:
    raw = bytearray(bytes(message))
    for _ in range(data.draw(st.integers(1, 3))):
        if raw and data.draw(st.booleans()):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        else:
            at = data.draw(st.integers(0, len(raw)))
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    _both(pb.TxnRequest, bytes(raw))


def test_unknown_field_keeps_betterproto2s_result() -> None:
    data = bytes(pb.PutRequest(key=b"k")) + b"\x98\x06\x01"  # field 99, varint
    assert parse_message(pb.PutRequest, data) == pb.PutRequest.parse(data)
    assert parse_message(pb.PutRequest, data)._unknown_fields == b"\x98\x06\x01"


def test_txn_read_ahead_is_what_parsing_gives_and_is_dropped_after() -> None:
    def txn(key: bytes) -> bytes:
        op = pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"v"))
        return bytes(pb.TxnRequest(success=[op]))

    payload = txn(b"a")
    command = encode(Kind.TXN, payload)
    plain, ahead = StateMachine(), StateMachine()
    with ahead.read_ahead(payload, pb.TxnRequest.parse(payload)):
        assert ahead._read  # the apply finds it
        assert ahead.apply(1, command) == plain.apply(1, command)
    assert ahead._read == {}
    assert ahead.kv.range(pb.RangeRequest(key=b"a")) == plain.kv.range(pb.RangeRequest(key=b"a"))
