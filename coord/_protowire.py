"""The protobuf wire format, hand-written for the hot paths (architecture rule 6).

Theory of operation: betterproto2 is 100-1000 times slower than a few lines of varint code, so
the messages on the hot paths (KV, Txn and Watch requests and responses, on both sides) are
read and written directly. This module is the one place that knows the wire format: varints
(int64 as 64-bit two's complement, as protobuf does), tags (``field << 3 | wire type``),
length-delimited fields, skipping unknown fields, and the field numbers of the messages the
hand-written codecs handle. It imports nothing else of coord, so the client
(:mod:`coord._kvcodec`) and the server (:mod:`coord.server.mvcc.kvencoding`,
:mod:`coord.server.api.pbcheck`, the watch hub) share it without depending on each other.

proto3 rules apply when encoding: a scalar field equal to its default (0, b"", False) is
omitted (:func:`int_field`, :func:`bool_field`); an explicitly present sub-message or a repeated
entry is always written (:func:`bytes_field`).

Field numbers are named per message (``PutRequestField.KEY``), as plain ``int`` class
constants rather than IntEnums: an IntEnum member lookup costs about 0.3 us on CPython 3.11,
which the request paths would pay several times per call. Codecs that compare tags in a loop
precompute them at import (``_KV_KEY = tag(KeyValueField.KEY, LEN)``). The golden tests
(tests/client/test_kvcodec.py, tests/mvcc/test_kvencoding.py, tests/test_protowire.py) check
the bytes against betterproto2.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "I32",
    "I64",
    "LEN",
    "VARINT",
    "DeleteRangeRequestField",
    "DeleteRangeResponseField",
    "EventField",
    "KeyValueField",
    "PutRequestField",
    "PutResponseField",
    "RangeRequestField",
    "RangeResponseField",
    "ResponseHeaderField",
    "ResponseOpField",
    "TxnResponseField",
    "WatchResponseField",
    "bool_field",
    "bytes_field",
    "decode_varint",
    "decode_varint_checked",
    "encode_varint",
    "int_field",
    "skip_field",
    "tag",
    "to_int64",
]

# -- wire types ---------------------------------------------------------------------------------

VARINT: Final = 0  #: int32/int64/uint32/uint64/sint*/bool/enum
I64: Final = 1  #: fixed64/sfixed64/double
LEN: Final = 2  #: bytes/string/sub-messages/packed repeated fields
I32: Final = 5  #: fixed32/sfixed32/float

_I64 = 1 << 64
_I63 = 1 << 63


def tag(field: int, wire: int) -> int:
    """The key of field ``field`` with wire type ``wire`` (one byte for fields 1..15)."""
    return (field << 3) | wire


# -- field numbers (etcdserverpb and mvccpb, as in proto/) -------------------------------------


class ResponseHeaderField:
    """``etcdserverpb.ResponseHeader``."""

    CLUSTER_ID: Final = 1
    MEMBER_ID: Final = 2
    REVISION: Final = 3
    RAFT_TERM: Final = 4


class KeyValueField:
    """``mvccpb.KeyValue``."""

    KEY: Final = 1
    CREATE_REVISION: Final = 2
    MOD_REVISION: Final = 3
    VERSION: Final = 4
    VALUE: Final = 5
    LEASE: Final = 6


class EventField:
    """``mvccpb.Event``."""

    TYPE: Final = 1
    KV: Final = 2
    PREV_KV: Final = 3


class RangeRequestField:
    """``etcdserverpb.RangeRequest``."""

    KEY: Final = 1
    RANGE_END: Final = 2
    LIMIT: Final = 3
    REVISION: Final = 4
    SORT_ORDER: Final = 5
    SORT_TARGET: Final = 6
    SERIALIZABLE: Final = 7
    KEYS_ONLY: Final = 8
    COUNT_ONLY: Final = 9
    MIN_MOD_REVISION: Final = 10
    MAX_MOD_REVISION: Final = 11
    MIN_CREATE_REVISION: Final = 12
    MAX_CREATE_REVISION: Final = 13


class RangeResponseField:
    """``etcdserverpb.RangeResponse``."""

    HEADER: Final = 1
    KVS: Final = 2
    MORE: Final = 3
    COUNT: Final = 4


class PutRequestField:
    """``etcdserverpb.PutRequest``."""

    KEY: Final = 1
    VALUE: Final = 2
    LEASE: Final = 3
    PREV_KV: Final = 4
    IGNORE_VALUE: Final = 5
    IGNORE_LEASE: Final = 6


class PutResponseField:
    """``etcdserverpb.PutResponse``."""

    HEADER: Final = 1
    PREV_KV: Final = 2


class DeleteRangeRequestField:
    """``etcdserverpb.DeleteRangeRequest``."""

    KEY: Final = 1
    RANGE_END: Final = 2
    PREV_KV: Final = 3


class DeleteRangeResponseField:
    """``etcdserverpb.DeleteRangeResponse``."""

    HEADER: Final = 1
    DELETED: Final = 2
    PREV_KVS: Final = 3


class ResponseOpField:
    """``etcdserverpb.ResponseOp`` (a oneof: exactly one is set)."""

    RESPONSE_RANGE: Final = 1
    RESPONSE_PUT: Final = 2
    RESPONSE_DELETE_RANGE: Final = 3
    RESPONSE_TXN: Final = 4


class TxnResponseField:
    """``etcdserverpb.TxnResponse``."""

    HEADER: Final = 1
    SUCCEEDED: Final = 2
    RESPONSES: Final = 3


class WatchResponseField:
    """``etcdserverpb.WatchResponse``."""

    HEADER: Final = 1
    WATCH_ID: Final = 2
    CREATED: Final = 3
    CANCELED: Final = 4
    COMPACT_REVISION: Final = 5
    CANCEL_REASON: Final = 6
    FRAGMENT: Final = 7
    EVENTS: Final = 11


# -- decoding -----------------------------------------------------------------------------------


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return ``(value, new_pos)`` (uint64 range).

    The fast reader: a truncated varint raises IndexError. Input that must be refused with a
    reason goes through :func:`decode_varint_checked`.
    """
    b = buf[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    result = b & 0x7F
    shift = 7
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("malformed varint")


def decode_varint_checked(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """:func:`decode_varint` within ``buf[:end]``: ValueError naming the offset if the varint
    is truncated or longer than 10 bytes."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ValueError(f"truncated varint at offset {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError(f"varint too long at offset {pos}")


def to_int64(v: int) -> int:
    """A decoded uint64 varint as the int64 it encodes (two's complement)."""
    return v - _I64 if v >= _I63 else v


def skip_field(buf: bytes, pos: int, wire: int) -> int:
    """Skip a field of wire type ``wire`` whose tag was just read; return the new position."""
    if wire == VARINT:
        return decode_varint(buf, pos)[1]
    if wire == LEN:
        n, pos = decode_varint(buf, pos)
        return pos + n
    if wire == I64:
        return pos + 8
    if wire == I32:
        return pos + 4
    raise ValueError(f"unsupported wire type {wire}")


# -- encoding -----------------------------------------------------------------------------------

_SMALL = [bytes((i,)) for i in range(128)]


def encode_varint(n: int) -> bytes:
    """Encode ``n`` as a protobuf varint (negative numbers as 64-bit two's complement)."""
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n += _I64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def int_field(field: int, n: int) -> bytes:
    """A varint field (int64/uint64/enum); empty when ``n`` is 0 (proto3 default)."""
    if n == 0:
        return b""
    return encode_varint(field << 3) + encode_varint(n)


def bool_field(field: int, b: bool) -> bytes:
    """A bool field; empty when false."""
    return encode_varint(field << 3) + b"\x01" if b else b""


def bytes_field(field: int, data: bytes) -> bytes:
    """A length-delimited field that is always present (sub-messages, repeated entries)."""
    return encode_varint((field << 3) | LEN) + encode_varint(len(data)) + data
