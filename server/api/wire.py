"""Protobuf wire helpers for the hot paths: response headers and strict validation.

Theory of operation: responses are assembled from bytes (the store returns each response body
without its header; we prepend field 1 here), and requests are validated *structurally* before
betterproto2 parses them, because betterproto2 is lenient: it accepts truncated length-
delimited fields and wire-type mismatches silently. :func:`check_message` walks the wire format
against a schema derived once per message class from betterproto2's metadata and raises
ValueError with a precise reason (offset, field number) on the first problem.
"""

from __future__ import annotations

from typing import Any

from coord.server.mvcc.wire import bytes_field, int_field

__all__ = ["check_message", "encode_header", "header_field"]


def encode_header(cluster_id: int, member_id: int, revision: int, raft_term: int) -> bytes:
    """Encoded etcdserverpb.ResponseHeader (zero fields omitted, as proto3 does)."""
    return (int_field(1, cluster_id) + int_field(2, member_id) + int_field(3, revision)
            + int_field(4, raft_term))


def header_field(header: bytes) -> bytes:
    """Field 1 (``header``) of any etcd response, carrying the encoded ``header``."""
    return bytes_field(1, header)


# -- strict validation -------------------------------------------------------------------------

_VARINT_TYPES = frozenset({"int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool",
                           "enum"})
_FIXED64_TYPES = frozenset({"fixed64", "sfixed64", "double"})
_FIXED32_TYPES = frozenset({"fixed32", "sfixed32", "float"})

# field number -> (expected wire type, nested message class or None, packed allowed)
_Schema = dict[int, tuple[int, Any, bool]]
_SCHEMAS: dict[type, _Schema] = {}


def _schema(cls: type) -> _Schema:
    schema = _SCHEMAS.get(cls)
    if schema is not None:
        return schema
    schema = {}
    meta = cls._betterproto  # type: ignore[attr-defined]
    for name, field in meta.meta_by_field_name.items():
        ptype = field.proto_type
        nested = None
        if ptype in _VARINT_TYPES:
            wire = 0
        elif ptype in _FIXED64_TYPES:
            wire = 1
        elif ptype in _FIXED32_TYPES:
            wire = 5
        else:
            wire = 2
            if ptype == "message":
                nested = meta.cls_by_field[name]
        schema[field.number] = (wire, nested, bool(field.repeated) and wire != 2)
    _SCHEMAS[cls] = schema
    return schema


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ValueError(f"truncated varint at offset {pos}")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError(f"varint too long at offset {pos}")


def check_message(data: bytes, cls: type, start: int = 0, end: int | None = None,
                  depth: int = 0, fields: dict[int, int] | None = None) -> None:
    """Raise ValueError unless ``data[start:end]`` is a well-formed ``cls`` message.

    If ``fields`` is given, it receives each top-level field's last value: the integer for
    varint fields, the length for length-delimited ones (enough for cheap request checks
    without a full parse).
    """
    if end is None:
        end = len(data)
    if depth > 64:
        raise ValueError("message nested too deeply")
    schema = _schema(cls)
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number = key >> 3
        wire = key & 7
        if number == 0:
            raise ValueError(f"invalid field number 0 at offset {pos}")
        if wire == 0:
            value, pos = _varint(data, pos, end)
            if fields is not None:
                fields[number] = value
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if fields is not None:
                fields[number] = length
            if pos + length > end:
                raise ValueError(f"field {number}: length {length} exceeds message at "
                                 f"offset {pos}")
            expected = schema.get(number)
            if expected is not None and expected[1] is not None:
                check_message(data, expected[1], pos, pos + length, depth + 1)
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"field {number}: unsupported wire type {wire}")
        if pos > end:
            raise ValueError(f"field {number}: truncated at offset {end}")
        expected = schema.get(number)
        if expected is not None and expected[0] != wire and not (expected[2] and wire == 2):
            raise ValueError(f"field {number}: wire type {wire}, expected {expected[0]}")
