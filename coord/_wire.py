"""Hand-written protobuf codec for the client's hot messages.

Theory of operation: betterproto2 decodes ~30k small messages per second, so a 10,000-key Range
would spend a third of a second in it. The messages on the hot paths (KV responses, Txn
responses, Watch responses, and the Range/Put/DeleteRange requests) have a tiny, fixed shape,
so this module reads and writes them directly with a varint reader over ``bytes``. Everything
else goes through the generated betterproto2 classes. ``tests/client/test_wire.py`` checks each
function against betterproto2 (golden tests, including unknown fields and negative int64s).

Decoders take the whole message as ``bytes`` and return the public types of
:mod:`coord.types` (or small tuples for internal use). Unknown fields are skipped, as protobuf
requires.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .types import Event, EventType, KeyValue, RangeResult

__all__ = [
    "RawWatchResponse",
    "decode_delete",
    "decode_header_revision",
    "decode_kv",
    "decode_put",
    "decode_range",
    "decode_txn",
    "decode_watch",
    "encode_delete",
    "encode_put",
    "encode_range",
]

_I64 = 1 << 64
_I63 = 1 << 63


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return ``(value, new_pos)`` (uint64 range)."""
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


def _int64(v: int) -> int:
    return v - _I64 if v >= _I63 else v


def _skip(buf: bytes, pos: int, wire: int) -> int:
    """Skip a field of wire type ``wire`` whose tag was just read."""
    if wire == 0:
        return _varint(buf, pos)[1]
    if wire == 2:
        n, pos = _varint(buf, pos)
        return pos + n
    if wire == 1:
        return pos + 8
    if wire == 5:
        return pos + 4
    raise ValueError(f"unsupported wire type {wire}")


def _kv_factory() -> Any:
    """A KeyValue constructor about 2x cheaper than the frozen dataclass's ``__init__``.

    It sets the slots through their descriptors (what ``object.__setattr__`` does after
    several lookups); the result is an ordinary, equal KeyValue (golden-tested).
    """
    new = object.__new__
    s0, s1, s2, s3, s4, s5 = (KeyValue.__dict__[f].__set__ for f in (
        "key", "value", "create_revision", "mod_revision", "version", "lease"))

    def make(key: bytes, value: bytes, create: int, mod: int, version: int,
             lease: int) -> KeyValue:
        kv = new(KeyValue)
        s0(kv, key)
        s1(kv, value)
        s2(kv, create)
        s3(kv, mod)
        s4(kv, version)
        s5(kv, lease)
        return kv  # type: ignore[no-any-return]

    return make


_new_kv = _kv_factory()


def decode_kv(buf: bytes, pos: int = 0, end: int | None = None) -> KeyValue:
    """Decode an ``mvccpb.KeyValue`` occupying ``buf[pos:end]``."""
    if end is None:
        end = len(buf)
    key = value = b""
    create = mod = version = lease = 0
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag == 0x0A or tag == 0x2A:  # key (1) / value (5), length-delimited
            n = buf[pos]
            pos += 1
            if n >= 0x80:
                n, pos = _varint(buf, pos - 1)
            data = buf[pos:pos + n]
            pos += n
            if tag == 0x0A:
                key = data
            else:
                value = data
        elif tag == 0x10 or tag == 0x18 or tag == 0x20 or tag == 0x30:
            v = buf[pos]
            pos += 1
            if v >= 0x80:  # multi-byte varint, inlined (revisions usually need 2-4 bytes)
                v &= 0x7F
                shift = 7
                while True:
                    b = buf[pos]
                    pos += 1
                    v |= (b & 0x7F) << shift
                    if b < 0x80:
                        break
                    shift += 7
                    if shift >= 70:
                        raise ValueError("malformed varint")
                if v >= _I63:
                    v -= _I64
            if tag == 0x10:
                create = v
            elif tag == 0x18:
                mod = v
            elif tag == 0x20:
                version = v
            else:
                lease = v
        else:
            if tag >= 0x80:
                tag, pos = _varint(buf, pos - 1)
            pos = _skip(buf, pos, tag & 7)
    return _new_kv(key, value, create, mod, version, lease)  # type: ignore[no-any-return]


def decode_header_revision(buf: bytes, pos: int, end: int) -> int:
    """Return ``revision`` (field 3) of a ``ResponseHeader`` at ``buf[pos:end]``."""
    rev = 0
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x18:
            v, pos = _varint(buf, pos)
            rev = _int64(v)
        else:
            pos = _skip(buf, pos, tag & 7)
    return rev


def decode_range(buf: bytes) -> RangeResult:
    """Decode a ``RangeResponse``."""
    return _decode_range(buf, 0, len(buf))


def _decode_range(buf: bytes, pos: int, end: int) -> RangeResult:
    kvs: list[KeyValue] = []
    append = kvs.append
    rev = count = 0
    more = False
    kv = decode_kv
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag == 0x12:  # kvs
            n = buf[pos]
            pos += 1
            if n >= 0x80:
                n, pos = _varint(buf, pos - 1)
            append(kv(buf, pos, pos + n))
            pos += n
        elif tag == 0x0A:  # header
            n, pos = _varint(buf, pos)
            rev = decode_header_revision(buf, pos, pos + n)
            pos += n
        elif tag == 0x18:
            v, pos = _varint(buf, pos)
            more = bool(v)
        elif tag == 0x20:
            v, pos = _varint(buf, pos)
            count = _int64(v)
        else:
            if tag >= 0x80:
                tag, pos = _varint(buf, pos - 1)
            pos = _skip(buf, pos, tag & 7)
    return RangeResult(kvs, more, count, rev)


def decode_put(buf: bytes) -> tuple[int, KeyValue | None]:
    """Decode a ``PutResponse`` into ``(revision, prev_kv)``."""
    return _decode_put(buf, 0, len(buf))


def _decode_put(buf: bytes, pos: int, end: int) -> tuple[int, KeyValue | None]:
    rev = 0
    prev: KeyValue | None = None
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x0A or tag == 0x12:
            n, pos = _varint(buf, pos)
            if tag == 0x0A:
                rev = decode_header_revision(buf, pos, pos + n)
            else:
                prev = decode_kv(buf, pos, pos + n)
            pos += n
        else:
            pos = _skip(buf, pos, tag & 7)
    return rev, prev


def decode_delete(buf: bytes) -> tuple[int, int, list[KeyValue]]:
    """Decode a ``DeleteRangeResponse`` into ``(revision, deleted, prev_kvs)``."""
    return _decode_delete(buf, 0, len(buf))


def _decode_delete(buf: bytes, pos: int, end: int) -> tuple[int, int, list[KeyValue]]:
    rev = deleted = 0
    prevs: list[KeyValue] = []
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x0A or tag == 0x1A:
            n, pos = _varint(buf, pos)
            if tag == 0x0A:
                rev = decode_header_revision(buf, pos, pos + n)
            else:
                prevs.append(decode_kv(buf, pos, pos + n))
            pos += n
        elif tag == 0x10:
            v, pos = _varint(buf, pos)
            deleted = _int64(v)
        else:
            pos = _skip(buf, pos, tag & 7)
    return rev, deleted, prevs


#: A decoded ResponseOp: (kind, payload) with kind 1 range, 2 put, 3 delete, 4 txn.
TxnOpResult = tuple[int, object]


def decode_txn(buf: bytes) -> tuple[int, bool, list[TxnOpResult]]:
    """Decode a ``TxnResponse`` into ``(revision, succeeded, [(kind, payload), ...])``.

    Payloads: kind 1 -> :class:`RangeResult`, 2 -> ``(revision, prev_kv)``,
    3 -> ``(revision, deleted, prev_kvs)``, 4 -> nested ``(revision, succeeded, ops)``.
    """
    return _decode_txn(buf, 0, len(buf))


def _decode_txn(buf: bytes, pos: int, end: int) -> tuple[int, bool, list[TxnOpResult]]:
    rev = 0
    ok = False
    ops: list[TxnOpResult] = []
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x0A:
            n, pos = _varint(buf, pos)
            rev = decode_header_revision(buf, pos, pos + n)
            pos += n
        elif tag == 0x10:
            v, pos = _varint(buf, pos)
            ok = bool(v)
        elif tag == 0x1A:  # ResponseOp
            n, pos = _varint(buf, pos)
            ops.append(_decode_response_op(buf, pos, pos + n))
            pos += n
        else:
            pos = _skip(buf, pos, tag & 7)
    return rev, ok, ops


def _decode_response_op(buf: bytes, pos: int, end: int) -> TxnOpResult:
    result: TxnOpResult = (0, None)
    while pos < end:
        tag, pos = _varint(buf, pos)
        field_no, wire = tag >> 3, tag & 7
        if wire == 2 and 1 <= field_no <= 4:
            n, pos = _varint(buf, pos)
            sub_end = pos + n
            if field_no == 1:
                result = (1, _decode_range(buf, pos, sub_end))
            elif field_no == 2:
                result = (2, _decode_put(buf, pos, sub_end))
            elif field_no == 3:
                result = (3, _decode_delete(buf, pos, sub_end))
            else:
                result = (4, _decode_txn(buf, pos, sub_end))
            pos = sub_end
        else:
            pos = _skip(buf, pos, wire)
    return result


class RawWatchResponse(NamedTuple):
    """A decoded ``WatchResponse`` (internal)."""

    revision: int
    watch_id: int
    created: bool
    canceled: bool
    compact_revision: int
    cancel_reason: str
    fragment: bool
    events: list[Event]


def _decode_event(buf: bytes, pos: int, end: int) -> Event:
    etype = 0
    kv: KeyValue | None = None
    prev: KeyValue | None = None
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x08:
            etype, pos = _varint(buf, pos)
        elif tag == 0x12 or tag == 0x1A:
            n, pos = _varint(buf, pos)
            if tag == 0x12:
                kv = decode_kv(buf, pos, pos + n)
            else:
                prev = decode_kv(buf, pos, pos + n)
            pos += n
        else:
            pos = _skip(buf, pos, tag & 7)
    return Event(EventType(etype), kv if kv is not None else KeyValue(b""), prev)


def decode_watch(buf: bytes) -> RawWatchResponse:
    """Decode a ``WatchResponse``."""
    pos, end = 0, len(buf)
    rev = watch_id = compact = 0
    created = canceled = fragment = False
    reason = ""
    events: list[Event] = []
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x5A:  # events (11)
            n, pos = _varint(buf, pos)
            events.append(_decode_event(buf, pos, pos + n))
            pos += n
        elif tag == 0x0A:
            n, pos = _varint(buf, pos)
            rev = decode_header_revision(buf, pos, pos + n)
            pos += n
        elif tag == 0x10:
            v, pos = _varint(buf, pos)
            watch_id = _int64(v)
        elif tag == 0x18:
            v, pos = _varint(buf, pos)
            created = bool(v)
        elif tag == 0x20:
            v, pos = _varint(buf, pos)
            canceled = bool(v)
        elif tag == 0x28:
            v, pos = _varint(buf, pos)
            compact = _int64(v)
        elif tag == 0x32:
            n, pos = _varint(buf, pos)
            reason = buf[pos:pos + n].decode("utf-8", "replace")
            pos += n
        elif tag == 0x38:
            v, pos = _varint(buf, pos)
            fragment = bool(v)
        else:
            pos = _skip(buf, pos, tag & 7)
    return RawWatchResponse(rev, watch_id, created, canceled, compact, reason, fragment, events)


# ----------------------------------------------------------------------------------- encoders


def _enc_varint(v: int) -> bytes:
    if v < 0:
        v += _I64
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _enc_bytes(tag: int, data: bytes) -> bytes:
    n = len(data)
    if n < 0x80:
        return bytes((tag, n)) + data
    return bytes((tag,)) + _enc_varint(n) + data


def encode_put(key: bytes, value: bytes, lease: int = 0, prev_kv: bool = False,
               ignore_value: bool = False, ignore_lease: bool = False) -> bytes:
    """Encode a ``PutRequest`` (byte-identical to betterproto2)."""
    out = _enc_bytes(0x0A, key) if key else b""
    if value:
        out += _enc_bytes(0x12, value)
    if lease:
        out += b"\x18" + _enc_varint(lease)
    if prev_kv:
        out += b"\x20\x01"
    if ignore_value:
        out += b"\x28\x01"
    if ignore_lease:
        out += b"\x30\x01"
    return out


def encode_range(key: bytes, range_end: bytes = b"", limit: int = 0, revision: int = 0,
                 sort_order: int = 0, sort_target: int = 0, serializable: bool = False,
                 keys_only: bool = False, count_only: bool = False, min_mod_revision: int = 0,
                 max_mod_revision: int = 0, min_create_revision: int = 0,
                 max_create_revision: int = 0) -> bytes:
    """Encode a ``RangeRequest`` (byte-identical to betterproto2)."""
    out = _enc_bytes(0x0A, key) if key else b""
    if range_end:
        out += _enc_bytes(0x12, range_end)
    for tag, v in ((0x18, limit), (0x20, revision), (0x28, sort_order), (0x30, sort_target)):
        if v:
            out += bytes((tag,)) + _enc_varint(v)
    for tag, flag in ((0x38, serializable), (0x40, keys_only), (0x48, count_only)):
        if flag:
            out += bytes((tag, 1))
    for tag, v in ((0x50, min_mod_revision), (0x58, max_mod_revision),
                   (0x60, min_create_revision), (0x68, max_create_revision)):
        if v:
            out += bytes((tag,)) + _enc_varint(v)
    return out


def encode_delete(key: bytes, range_end: bytes = b"", prev_kv: bool = False) -> bytes:
    """Encode a ``DeleteRangeRequest`` (byte-identical to betterproto2)."""
    out = _enc_bytes(0x0A, key) if key else b""
    if range_end:
        out += _enc_bytes(0x12, range_end)
    if prev_kv:
        out += b"\x18\x01"
    return out
