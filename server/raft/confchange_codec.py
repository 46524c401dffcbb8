"""Struct-based encoding of conf changes, carried in ``Entry.data`` of CONF_CHANGE entries.

Layout (big-endian)::

    ConfChange:    b"\\x01" | type:u8 | node_id:u64 | len(context):u32 | context
    ConfChangeV2:  b"\\x02" | transition:u8 | n:u32 | n * (type:u8 | node_id:u64 | len:u32 | ctx)
                   | len(context):u32 | context

The leading tag byte lets :func:`decode_conf_change` return the right class.
"""

from __future__ import annotations

import struct

from .types import ConfChange, ConfChangeType, ConfChangeV2

__all__ = ["decode_conf_change", "encode_conf_change"]

_TAG_V1 = 1
_TAG_V2 = 2
_SINGLE = struct.Struct(">BQI")
_V2_HEAD = struct.Struct(">BBI")
_U32 = struct.Struct(">I")


def _encode_single(cc: ConfChange) -> bytes:
    return _SINGLE.pack(int(cc.type), cc.node_id, len(cc.context)) + cc.context


def _decode_single(data: bytes, off: int) -> tuple[ConfChange, int]:
    typ, node_id, n = _SINGLE.unpack_from(data, off)
    off += _SINGLE.size
    ctx = bytes(data[off : off + n])
    if len(ctx) != n:
        raise ValueError("truncated conf change context")
    return ConfChange(ConfChangeType(typ), node_id, ctx), off + n


def encode_conf_change(cc: ConfChange | ConfChangeV2) -> bytes:
    """Encode a conf change for ``Entry.data``."""
    if isinstance(cc, ConfChange):
        return bytes([_TAG_V1]) + _encode_single(cc)
    parts = [_V2_HEAD.pack(_TAG_V2, cc.transition, len(cc.changes))]
    parts.extend(_encode_single(c) for c in cc.changes)
    parts.append(_U32.pack(len(cc.context)) + cc.context)
    return b"".join(parts)


def decode_conf_change(data: bytes) -> ConfChange | ConfChangeV2:
    """Decode bytes produced by :func:`encode_conf_change`.

    Raises:
        ValueError: the payload is empty, truncated, has trailing bytes or an unknown tag.
    """
    try:
        if not data:
            raise ValueError("empty conf change payload")
        if data[0] == _TAG_V1:
            cc, off = _decode_single(data, 1)
            if off != len(data):
                raise ValueError("trailing bytes after conf change")
            return cc
        if data[0] == _TAG_V2:
            _, transition, n = _V2_HEAD.unpack_from(data, 0)
            off = _V2_HEAD.size
            changes = []
            for _ in range(n):
                c, off = _decode_single(data, off)
                changes.append(c)
            (clen,) = _U32.unpack_from(data, off)
            off += _U32.size
            ctx = bytes(data[off : off + clen])
            if len(ctx) != clen or off + clen != len(data):
                raise ValueError("bad ConfChangeV2 context length")
            return ConfChangeV2(changes, transition, ctx)
    except struct.error as exc:
        raise ValueError(f"truncated conf change: {exc}") from None
    raise ValueError(f"unknown conf change tag {data[0]}")
