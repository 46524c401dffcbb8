"""A tiny hand-written protobuf writer for the hot paths (DESIGN rule 6).

betterproto2 is far too slow to encode every KeyValue of every Range or Watch response, so the
store encodes each KeyValue once, when it is written, and responses are concatenations of
those stored bytes plus a few varints. Only what the store needs is here: varints (int64 as
two's complement, as protobuf does), tags, and length-delimited fields. proto3 rules apply:
scalar fields equal to their default (0, b"", False) are omitted; an explicitly present
sub-message is always written, even when empty.

The golden tests (tests/mvcc/test_wire.py) check these bytes against betterproto2's encoding.
"""

from __future__ import annotations

__all__ = [
    "varint",
    "int_field",
    "bytes_field",
    "bool_field",
    "encode_kv",
    "kv_field",
    "header_with_revision",
]

_SMALL = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    """Encode ``n`` as a protobuf varint (negative numbers as 64-bit two's complement)."""
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
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
    return varint(field << 3) + varint(n)


def bool_field(field: int, b: bool) -> bytes:
    """A bool field; empty when false."""
    return varint(field << 3) + b"\x01" if b else b""


def bytes_field(field: int, data: bytes) -> bytes:
    """A length-delimited field that is always present (sub-messages, repeated entries)."""
    return varint((field << 3) | 2) + varint(len(data)) + data


def encode_kv(key: bytes, create: int, mod: int, version: int, value: bytes, lease: int) -> bytes:
    """Encode an ``mvccpb.KeyValue`` (fields 1..6, defaults omitted)."""
    parts = [b"\x0a", varint(len(key)), key]
    if create:
        parts += (b"\x10", varint(create))
    if mod:
        parts += (b"\x18", varint(mod))
    if version:
        parts += (b"\x20", varint(version))
    if value:
        parts += (b"\x2a", varint(len(value)), value)
    if lease:
        parts += (b"\x30", varint(lease))
    return b"".join(parts)


def kv_field(encoded_kv: bytes) -> bytes:
    """``encoded_kv`` as field 2 (the tag of RangeResponse.kvs, PutResponse.prev_kv, Event.kv)."""
    return b"\x12" + varint(len(encoded_kv)) + encoded_kv


def header_with_revision(revision: int) -> bytes:
    """Field 1 holding a ResponseHeader with only ``revision`` set (nested txn responses)."""
    inner = int_field(3, revision)
    return b"\x0a" + varint(len(inner)) + inner
