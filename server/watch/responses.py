"""Encoded WatchResponse messages and their events, built from the store's bytes.

A KeyVersion carries its KeyValue already encoded as field 2 (``kvf``), which is exactly
``Event.kv``; an event is that, plus the DELETE type and a retagged previous KeyValue when
asked for. Both the push side (synced watchers, one revision at a time) and the pull side
(catching-up watchers, from history) build their events here, so the two agree byte for byte.
"""

from __future__ import annotations

from coord._protowire import (
    LEN,
    VARINT,
    EventField,
    WatchResponseField,
    bool_field,
    bytes_field,
    encode_varint,
    int_field,
    tag,
)
from coord.server.mvcc import KeyVersion

__all__ = ["event", "fragments", "header_field", "response"]

_DELETE_TYPE = bytes((tag(EventField.TYPE, VARINT), 1))  # mvccpb.Event.DELETE
_PREV_KV = bytes((tag(EventField.PREV_KV, LEN),))
_EVENTS = bytes((tag(WatchResponseField.EVENTS, LEN),))
_FRAGMENT_TRUE = bool_field(WatchResponseField.FRAGMENT, True)


def event(v: KeyVersion, prev: KeyVersion | None) -> bytes:
    """``v`` as a WatchResponse.events field (with ``prev`` as its prev_kv when given)."""
    ev = _DELETE_TYPE + v.kvf if v.version == 0 else v.kvf  # kvf: Event.kv
    if prev is not None:
        ev += _PREV_KV + prev.kvf[1:]  # retagged as Event.prev_kv
    return _EVENTS + encode_varint(len(ev)) + ev


def header_field(header: bytes) -> bytes:
    """An encoded ResponseHeader as WatchResponse.header."""
    return bytes_field(WatchResponseField.HEADER, header)


def response(
    header: bytes,
    watch_id: int,
    *,
    created: bool = False,
    canceled: bool = False,
    compact_revision: int = 0,
    cancel_reason: str = "",
    fragment: bool = False,
    events: list[bytes] | None = None,
) -> bytes:
    """A whole WatchResponse, fields in etcd's order (``events`` as from :func:`event`)."""
    parts = [
        header_field(header),
        int_field(WatchResponseField.WATCH_ID, watch_id),
        bool_field(WatchResponseField.CREATED, created),
        bool_field(WatchResponseField.CANCELED, canceled),
        int_field(WatchResponseField.COMPACT_REVISION, compact_revision),
    ]
    if cancel_reason:
        parts.append(bytes_field(WatchResponseField.CANCEL_REASON, cancel_reason.encode()))
    parts.append(bool_field(WatchResponseField.FRAGMENT, fragment))
    if events:
        parts.extend(events)
    return b"".join(parts)


def fragments(header: bytes, wid: int, events: list[bytes], limit: int) -> list[bytes]:
    """etcd's sendFragments: split only if the response is >= limit and has >= 2 events."""
    fixed = (
        len(header_field(header))
        + len(int_field(WatchResponseField.WATCH_ID, wid))
        + len(_FRAGMENT_TRUE)
    )
    total = fixed + sum(len(e) for e in events)
    if total < limit:
        return [response(header, wid, events=events)]
    out: list[bytes] = []
    cur: list[bytes] = []
    size = fixed
    for ev in events:
        if cur and size + len(ev) >= limit:
            out.append(response(header, wid, fragment=True, events=cur))
            cur, size = [], fixed
        cur.append(ev)
        size += len(ev)
    out.append(response(header, wid, events=cur))
    return out
