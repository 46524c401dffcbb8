"""Strict structural validation of requests before betterproto2 parses them.

Theory of operation: betterproto2 is lenient: it accepts truncated length-delimited fields and
wire-type mismatches silently. :func:`check_message` walks the wire format (the primitives of
:mod:`coord._protowire`) against a schema derived once per message class from betterproto2's
metadata and raises ValueError with a precise reason (offset, field number) on the first
problem. It can also report each top-level field's value or length, so a hot handler (Put)
checks a request without parsing it.
"""

from __future__ import annotations

from typing import Any

from coord._protowire import I32, I64, LEN, VARINT
from coord._protowire import decode_varint_checked as _varint

__all__ = ["check_message"]

_VARINT_TYPES = frozenset(
    {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool", "enum"}
)
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
            wire = VARINT
        elif ptype in _FIXED64_TYPES:
            wire = I64
        elif ptype in _FIXED32_TYPES:
            wire = I32
        else:
            wire = LEN
            if ptype == "message":
                nested = meta.cls_by_field[name]
        schema[field.number] = (wire, nested, bool(field.repeated) and wire != LEN)
    _SCHEMAS[cls] = schema
    return schema


def check_message(
    data: bytes,
    cls: type,
    start: int = 0,
    end: int | None = None,
    depth: int = 0,
    fields: dict[int, int] | None = None,
) -> None:
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
        if wire == VARINT:
            value, pos = _varint(data, pos, end)
            if fields is not None:
                fields[number] = value
        elif wire == LEN:
            length, pos = _varint(data, pos, end)
            if fields is not None:
                fields[number] = length
            if pos + length > end:
                raise ValueError(f"field {number}: length {length} exceeds message at offset {pos}")
            expected = schema.get(number)
            if expected is not None and expected[1] is not None:
                check_message(data, expected[1], pos, pos + length, depth + 1)
            pos += length
        elif wire == I64:
            pos += 8
        elif wire == I32:
            pos += 4
        else:
            raise ValueError(f"field {number}: unsupported wire type {wire}")
        if pos > end:
            raise ValueError(f"field {number}: truncated at offset {end}")
        expected = schema.get(number)
        if expected is not None and expected[0] != wire and not (expected[2] and wire == LEN):
            raise ValueError(f"field {number}: wire type {wire}, expected {expected[0]}")
