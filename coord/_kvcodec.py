"""Hand-written protobuf codec for the client's hot messages (KV, Txn and Watch).

Theory of operation: betterproto2 decodes ~30k small messages per second, so a 10,000-key Range
would spend a third of a second in it. The messages on the hot paths (KV responses, Txn
responses, Watch responses, and the Range/Put/DeleteRange requests) have a tiny, fixed shape,
so this module reads and writes them directly over the wire primitives of
:mod:`coord._protowire` (which also names the field numbers). Everything else goes through the
generated betterproto2 classes. ``tests/client/test_kvcodec.py`` checks each function against
betterproto2 (golden tests, including unknown fields and negative int64s).

Decoders take the whole message as ``bytes`` and return the public types of
:mod:`coord.types` (or small tuples for internal use). Unknown fields are skipped, as protobuf
requires. The tags the loops compare are computed once, at import (one byte each: every field
number here is below 16).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._protowire import (
    LEN,
    VARINT,
    DeleteRangeRequestField,
    DeleteRangeResponseField,
    EventField,
    KeyValueField,
    PutRequestField,
    PutResponseField,
    RangeRequestField,
    RangeResponseField,
    ResponseHeaderField,
    ResponseOpField,
    TxnResponseField,
    WatchResponseField,
)
from ._protowire import decode_varint as _varint
from ._protowire import encode_varint as _enc_varint
from ._protowire import skip_field as _skip
from ._protowire import tag as _tag
from ._protowire import to_int64 as _int64
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

_KV_KEY = _tag(KeyValueField.KEY, LEN)
_KV_VALUE = _tag(KeyValueField.VALUE, LEN)
_KV_CREATE = _tag(KeyValueField.CREATE_REVISION, VARINT)
_KV_MOD = _tag(KeyValueField.MOD_REVISION, VARINT)
_KV_VERSION = _tag(KeyValueField.VERSION, VARINT)
_KV_LEASE = _tag(KeyValueField.LEASE, VARINT)

_HEADER_REVISION = _tag(ResponseHeaderField.REVISION, VARINT)

_RANGE_HEADER = _tag(RangeResponseField.HEADER, LEN)
_RANGE_KVS = _tag(RangeResponseField.KVS, LEN)
_RANGE_MORE = _tag(RangeResponseField.MORE, VARINT)
_RANGE_COUNT = _tag(RangeResponseField.COUNT, VARINT)

_PUT_HEADER = _tag(PutResponseField.HEADER, LEN)
_PUT_PREV_KV = _tag(PutResponseField.PREV_KV, LEN)

_DELETE_HEADER = _tag(DeleteRangeResponseField.HEADER, LEN)
_DELETE_DELETED = _tag(DeleteRangeResponseField.DELETED, VARINT)
_DELETE_PREV_KVS = _tag(DeleteRangeResponseField.PREV_KVS, LEN)

_TXN_HEADER = _tag(TxnResponseField.HEADER, LEN)
_TXN_SUCCEEDED = _tag(TxnResponseField.SUCCEEDED, VARINT)
_TXN_RESPONSES = _tag(TxnResponseField.RESPONSES, LEN)

_OP_RANGE = ResponseOpField.RESPONSE_RANGE
_OP_PUT = ResponseOpField.RESPONSE_PUT
_OP_DELETE_RANGE = ResponseOpField.RESPONSE_DELETE_RANGE
_OP_TXN = ResponseOpField.RESPONSE_TXN

_EVENT_TYPE = _tag(EventField.TYPE, VARINT)
_EVENT_KV = _tag(EventField.KV, LEN)
_EVENT_PREV_KV = _tag(EventField.PREV_KV, LEN)

_WATCH_HEADER = _tag(WatchResponseField.HEADER, LEN)
_WATCH_ID = _tag(WatchResponseField.WATCH_ID, VARINT)
_WATCH_CREATED = _tag(WatchResponseField.CREATED, VARINT)
_WATCH_CANCELED = _tag(WatchResponseField.CANCELED, VARINT)
_WATCH_COMPACT_REVISION = _tag(WatchResponseField.COMPACT_REVISION, VARINT)
_WATCH_CANCEL_REASON = _tag(WatchResponseField.CANCEL_REASON, LEN)
_WATCH_FRAGMENT = _tag(WatchResponseField.FRAGMENT, VARINT)
_WATCH_EVENTS = _tag(WatchResponseField.EVENTS, LEN)

# request tags, as the bytes the encoders prepend
_PUT_KEY = _tag(PutRequestField.KEY, LEN)
_PUT_VALUE = _tag(PutRequestField.VALUE, LEN)
_PUT_LEASE = bytes((_tag(PutRequestField.LEASE, VARINT),))
_PUT_PREV_KV_TRUE = bytes((_tag(PutRequestField.PREV_KV, VARINT), 1))
_PUT_IGNORE_VALUE_TRUE = bytes((_tag(PutRequestField.IGNORE_VALUE, VARINT), 1))
_PUT_IGNORE_LEASE_TRUE = bytes((_tag(PutRequestField.IGNORE_LEASE, VARINT), 1))

_RANGE_REQ_KEY = _tag(RangeRequestField.KEY, LEN)
_RANGE_REQ_END = _tag(RangeRequestField.RANGE_END, LEN)
_RANGE_REQ_LIMIT = _tag(RangeRequestField.LIMIT, VARINT)
_RANGE_REQ_REVISION = _tag(RangeRequestField.REVISION, VARINT)
_RANGE_REQ_SORT_ORDER = _tag(RangeRequestField.SORT_ORDER, VARINT)
_RANGE_REQ_SORT_TARGET = _tag(RangeRequestField.SORT_TARGET, VARINT)
_RANGE_REQ_SERIALIZABLE = _tag(RangeRequestField.SERIALIZABLE, VARINT)
_RANGE_REQ_KEYS_ONLY = _tag(RangeRequestField.KEYS_ONLY, VARINT)
_RANGE_REQ_COUNT_ONLY = _tag(RangeRequestField.COUNT_ONLY, VARINT)
_RANGE_REQ_MIN_MOD = _tag(RangeRequestField.MIN_MOD_REVISION, VARINT)
_RANGE_REQ_MAX_MOD = _tag(RangeRequestField.MAX_MOD_REVISION, VARINT)
_RANGE_REQ_MIN_CREATE = _tag(RangeRequestField.MIN_CREATE_REVISION, VARINT)
_RANGE_REQ_MAX_CREATE = _tag(RangeRequestField.MAX_CREATE_REVISION, VARINT)

_DELETE_REQ_KEY = _tag(DeleteRangeRequestField.KEY, LEN)
_DELETE_REQ_END = _tag(DeleteRangeRequestField.RANGE_END, LEN)
_DELETE_REQ_PREV_KV_TRUE = bytes((_tag(DeleteRangeRequestField.PREV_KV, VARINT), 1))


def _kv_factory() -> Any:
    """A KeyValue constructor about 2x cheaper than the frozen dataclass's ``__init__``.

    It sets the slots through their descriptors (what ``object.__setattr__`` does after
    several lookups); the result is an ordinary, equal KeyValue (golden-tested).
    """
    new = object.__new__
    s0, s1, s2, s3, s4, s5 = (
        KeyValue.__dict__[f].__set__
        for f in ("key", "value", "create_revision", "mod_revision", "version", "lease")
    )

    def make(key: bytes, value: bytes, create: int, mod: int, version: int, lease: int) -> KeyValue:
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
        if tag == _KV_KEY or tag == _KV_VALUE:  # noqa: SIM109 (== on globals is as fast as on literals; `in` is slower)
            n = buf[pos]
            pos += 1
            if n >= 0x80:
                n, pos = _varint(buf, pos - 1)
            data = buf[pos : pos + n]
            pos += n
            if tag == _KV_KEY:
                key = data
            else:
                value = data
        elif tag == _KV_CREATE or tag == _KV_MOD or tag == _KV_VERSION or tag == _KV_LEASE:  # noqa: SIM109
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
            if tag == _KV_CREATE:
                create = v
            elif tag == _KV_MOD:
                mod = v
            elif tag == _KV_VERSION:
                version = v
            else:
                lease = v
        else:
            if tag >= 0x80:
                tag, pos = _varint(buf, pos - 1)
            pos = _skip(buf, pos, tag & 7)
    return _new_kv(key, value, create, mod, version, lease)  # type: ignore[no-any-return]


def decode_header_revision(buf: bytes, pos: int, end: int) -> int:
    """Return ``revision`` of a ``ResponseHeader`` at ``buf[pos:end]``."""
    rev = 0
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == _HEADER_REVISION:
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
        if tag == _RANGE_KVS:
            n = buf[pos]
            pos += 1
            if n >= 0x80:
                n, pos = _varint(buf, pos - 1)
            append(kv(buf, pos, pos + n))
            pos += n
        elif tag == _RANGE_HEADER:
            n, pos = _varint(buf, pos)
            rev = decode_header_revision(buf, pos, pos + n)
            pos += n
        elif tag == _RANGE_MORE:
            v, pos = _varint(buf, pos)
            more = bool(v)
        elif tag == _RANGE_COUNT:
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
        if tag == _PUT_HEADER or tag == _PUT_PREV_KV:  # noqa: SIM109
            n, pos = _varint(buf, pos)
            if tag == _PUT_HEADER:
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
        if tag == _DELETE_HEADER or tag == _DELETE_PREV_KVS:  # noqa: SIM109
            n, pos = _varint(buf, pos)
            if tag == _DELETE_HEADER:
                rev = decode_header_revision(buf, pos, pos + n)
            else:
                prevs.append(decode_kv(buf, pos, pos + n))
            pos += n
        elif tag == _DELETE_DELETED:
            v, pos = _varint(buf, pos)
            deleted = _int64(v)
        else:
            pos = _skip(buf, pos, tag & 7)
    return rev, deleted, prevs


#: A decoded ResponseOp: (kind, payload), kind the field number of the op that is set
#: (:class:`ResponseOpField`): 1 range, 2 put, 3 delete, 4 txn.
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
        if tag == _TXN_HEADER:
            n, pos = _varint(buf, pos)
            rev = decode_header_revision(buf, pos, pos + n)
            pos += n
        elif tag == _TXN_SUCCEEDED:
            v, pos = _varint(buf, pos)
            ok = bool(v)
        elif tag == _TXN_RESPONSES:
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
        if wire == LEN and _OP_RANGE <= field_no <= _OP_TXN:
            n, pos = _varint(buf, pos)
            sub_end = pos + n
            if field_no == _OP_RANGE:
                result = (field_no, _decode_range(buf, pos, sub_end))
            elif field_no == _OP_PUT:
                result = (field_no, _decode_put(buf, pos, sub_end))
            elif field_no == _OP_DELETE_RANGE:
                result = (field_no, _decode_delete(buf, pos, sub_end))
            else:
                result = (field_no, _decode_txn(buf, pos, sub_end))
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
        if tag == _EVENT_TYPE:
            etype, pos = _varint(buf, pos)
        elif tag == _EVENT_KV or tag == _EVENT_PREV_KV:  # noqa: SIM109
            n, pos = _varint(buf, pos)
            if tag == _EVENT_KV:
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
        if tag == _WATCH_EVENTS:
            n, pos = _varint(buf, pos)
            events.append(_decode_event(buf, pos, pos + n))
            pos += n
        elif tag == _WATCH_HEADER:
            n, pos = _varint(buf, pos)
            rev = decode_header_revision(buf, pos, pos + n)
            pos += n
        elif tag == _WATCH_ID:
            v, pos = _varint(buf, pos)
            watch_id = _int64(v)
        elif tag == _WATCH_CREATED:
            v, pos = _varint(buf, pos)
            created = bool(v)
        elif tag == _WATCH_CANCELED:
            v, pos = _varint(buf, pos)
            canceled = bool(v)
        elif tag == _WATCH_COMPACT_REVISION:
            v, pos = _varint(buf, pos)
            compact = _int64(v)
        elif tag == _WATCH_CANCEL_REASON:
            n, pos = _varint(buf, pos)
            reason = buf[pos : pos + n].decode("utf-8", "replace")
            pos += n
        elif tag == _WATCH_FRAGMENT:
            v, pos = _varint(buf, pos)
            fragment = bool(v)
        else:
            pos = _skip(buf, pos, tag & 7)
    return RawWatchResponse(rev, watch_id, created, canceled, compact, reason, fragment, events)


# ----------------------------------------------------------------------------------- encoders


def _enc_bytes(tag: int, data: bytes) -> bytes:
    n = len(data)
    if n < 0x80:
        return bytes((tag, n)) + data
    return bytes((tag,)) + _enc_varint(n) + data


def encode_put(
    key: bytes,
    value: bytes,
    lease: int = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> bytes:
    """Encode a ``PutRequest`` (byte-identical to betterproto2)."""
    out = _enc_bytes(_PUT_KEY, key) if key else b""
    if value:
        out += _enc_bytes(_PUT_VALUE, value)
    if lease:
        out += _PUT_LEASE + _enc_varint(lease)
    if prev_kv:
        out += _PUT_PREV_KV_TRUE
    if ignore_value:
        out += _PUT_IGNORE_VALUE_TRUE
    if ignore_lease:
        out += _PUT_IGNORE_LEASE_TRUE
    return out


def encode_range(
    key: bytes,
    range_end: bytes = b"",
    limit: int = 0,
    revision: int = 0,
    sort_order: int = 0,
    sort_target: int = 0,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    min_mod_revision: int = 0,
    max_mod_revision: int = 0,
    min_create_revision: int = 0,
    max_create_revision: int = 0,
) -> bytes:
    """Encode a ``RangeRequest`` (byte-identical to betterproto2)."""
    out = _enc_bytes(_RANGE_REQ_KEY, key) if key else b""
    if range_end:
        out += _enc_bytes(_RANGE_REQ_END, range_end)
    for tag, v in (
        (_RANGE_REQ_LIMIT, limit),
        (_RANGE_REQ_REVISION, revision),
        (_RANGE_REQ_SORT_ORDER, sort_order),
        (_RANGE_REQ_SORT_TARGET, sort_target),
    ):
        if v:
            out += bytes((tag,)) + _enc_varint(v)
    for tag, flag in (
        (_RANGE_REQ_SERIALIZABLE, serializable),
        (_RANGE_REQ_KEYS_ONLY, keys_only),
        (_RANGE_REQ_COUNT_ONLY, count_only),
    ):
        if flag:
            out += bytes((tag, 1))
    for tag, v in (
        (_RANGE_REQ_MIN_MOD, min_mod_revision),
        (_RANGE_REQ_MAX_MOD, max_mod_revision),
        (_RANGE_REQ_MIN_CREATE, min_create_revision),
        (_RANGE_REQ_MAX_CREATE, max_create_revision),
    ):
        if v:
            out += bytes((tag,)) + _enc_varint(v)
    return out


def encode_delete(key: bytes, range_end: bytes = b"", prev_kv: bool = False) -> bytes:
    """Encode a ``DeleteRangeRequest`` (byte-identical to betterproto2)."""
    out = _enc_bytes(_DELETE_REQ_KEY, key) if key else b""
    if range_end:
        out += _enc_bytes(_DELETE_REQ_END, range_end)
    if prev_kv:
        out += _DELETE_REQ_PREV_KV_TRUE
    return out
