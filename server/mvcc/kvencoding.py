"""The store's encoded KeyValues and the response pieces built from them (architecture rule 6).

betterproto2 is far too slow to encode every KeyValue of every Range or Watch response, so the
store encodes each KeyValue once, when it is written, and responses are concatenations of
those stored bytes plus a few varints. The wire primitives (varints, tags, fields) and the
field numbers are :mod:`coord._protowire`'s; this module holds what is specific to the store:
an ``mvccpb.KeyValue``, that KeyValue as a response field (and the value read back from it:
the store keeps a value only inside its encoded KeyValue), and the minimal header of a nested
Txn response.

The golden tests (tests/mvcc/test_kvencoding.py) check these bytes against betterproto2's
encoding.
"""

from __future__ import annotations

from coord._protowire import (
    LEN,
    VARINT,
    KeyValueField,
    RangeResponseField,
    ResponseHeaderField,
    TxnResponseField,
    decode_varint,
    encode_varint,
    int_field,
    skip_field,
    tag,
)

__all__ = ["encode_kv", "header_with_revision", "kv_field", "kv_field_value"]

_KEY = bytes((tag(KeyValueField.KEY, LEN),))
_CREATE = bytes((tag(KeyValueField.CREATE_REVISION, VARINT),))
_MOD = bytes((tag(KeyValueField.MOD_REVISION, VARINT),))
_VERSION = bytes((tag(KeyValueField.VERSION, VARINT),))
_VALUE = bytes((tag(KeyValueField.VALUE, LEN),))
_LEASE = bytes((tag(KeyValueField.LEASE, VARINT),))
# RangeResponse.kvs, PutResponse.prev_kv and Event.kv are all field 2
_KV_FIELD = bytes((tag(RangeResponseField.KVS, LEN),))
_HEADER_FIELD = bytes((tag(TxnResponseField.HEADER, LEN),))


def encode_kv(key: bytes, create: int, mod: int, version: int, value: bytes, lease: int) -> bytes:
    """Encode an ``mvccpb.KeyValue`` (key always, the other fields when not default)."""
    varint = encode_varint
    parts = [_KEY, varint(len(key)), key]
    if create:
        parts += (_CREATE, varint(create))
    if mod:
        parts += (_MOD, varint(mod))
    if version:
        parts += (_VERSION, varint(version))
    if value:
        parts += (_VALUE, varint(len(value)), value)
    if lease:
        parts += (_LEASE, varint(lease))
    return b"".join(parts)


def kv_field_value(kvf: bytes) -> bytes:
    """The value inside a :func:`kv_field` (b"" when it has none)."""
    _, pos = decode_varint(kvf, 1)  # after the field's tag: the KeyValue's length
    end = len(kvf)
    while pos < end:
        key, pos = decode_varint(kvf, pos)
        if key == _VALUE[0]:
            n, pos = decode_varint(kvf, pos)
            return kvf[pos : pos + n]
        pos = skip_field(kvf, pos, key & 7)
    return b""


def kv_field(encoded_kv: bytes) -> bytes:
    """``encoded_kv`` as field 2 (the tag of RangeResponse.kvs, PutResponse.prev_kv, Event.kv)."""
    return _KV_FIELD + encode_varint(len(encoded_kv)) + encoded_kv


def header_with_revision(revision: int) -> bytes:
    """Field 1 holding a ResponseHeader with only ``revision`` set (nested txn responses)."""
    inner = int_field(ResponseHeaderField.REVISION, revision)
    return _HEADER_FIELD + encode_varint(len(inner)) + inner
