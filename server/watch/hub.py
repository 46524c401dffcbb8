"""WatchHub: pull-based fan-out of store changes to Watch streams.

Theory of operation
-------------------
A :class:`WatchHub` sits next to one :class:`~coord.server.mvcc.KVStore` and owns the open
:class:`WatchStream` objects (one per Watch RPC). It never buffers events: the store keeps the
history (``store.events``), and every watcher is just a *cursor* (``next_rev``, the next
revision it still has to look at) plus its key range and options. So nothing a client does (or
fails to do) can make the hub hold more than O(watchers) state, and writers never wait for
anyone.

A watcher is *synced* (etcd's synced group) when it has seen everything up to the current
revision; its cursor is then implicit (current revision + 1, or its start revision if that is
in the future). Otherwise it is *unsynced* and ``next_rev`` says where to resume.

Push side (in the writer's call stack, cheap): after each write that bumps the revision to R the
store calls the hub, which matches the changes of R against the synced watchers only: a dict
from key to single-key watchers, plus the (usually few) range watchers, so the cost is
O(changes x (1 + range watchers)), independent of the number of idle single-key watchers. A
matching watcher becomes unsynced with ``next_rev = R`` and its stream's ``wakeup()`` is
called (``wakeup`` only sets a flag/event for the stream's sender task). Unsynced watchers are
not looked at by writers at all.

Pull side (in each stream's sender task): :meth:`WatchStream.next_responses` returns fully
encoded WatchResponse messages, at most about ``max_bytes`` of them, and is called until it
returns an empty list. It emits, in order:

1. queued control responses (created, canceled, per-watch progress) in request order: a
   watcher's "created" response therefore always precedes its events;
2. event batches, visiting watchers round-robin: each response holds the events of one watcher
   for one or more whole revisions (up to 1000 revisions, or until the byte budget is used),
   assembled from the stored KeyValue bytes, with ``header.revision`` = the store revision at
   send time. A revision is never split, except for a watcher created with ``fragment`` whose
   response exceeds ``fragment_bytes`` (then etcd's fragment algorithm applies). A watcher whose
   cursor fell below the compaction revision is removed and gets
   ``{canceled, compact_revision}`` (header revision 0, as etcd);
3. a stream-wide progress response (``watch_id -1``, header = current revision) if one was
   requested and every watcher of the stream is now caught up.

A slow client only delays its own stream: its cursors lag and later catch up from history
(or are cancelled with compact_revision if compaction overtook them).

Watch IDs are per stream; auto IDs start at 0 and skip IDs in use; a client-chosen non-zero ID
is honoured. Create failures (empty range, duplicate ID) answer ``created`` + ``canceled`` with
``watch_id -1`` and etcd's cancel_reason text.

Invariants (:meth:`WatchStream._check`, :meth:`WatchHub._check`): the hub's key/range indexes
hold exactly the synced watchers of open streams; an unsynced cursor is in [1, current + 1];
a closed stream holds nothing and is unknown to the hub; the hub is a listener of its store.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from coord._pb.etcdserverpb import WatchCreateRequest, WatchRequest
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
from coord.server.mvcc import KeyVersion, KVStore

__all__ = ["WatchHub", "WatchStream"]

ERR_EMPTY_RANGE = "mvcc: watcher range is empty"
ERR_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
# etcd >= 3.5.24 / 3.6.6 rejects negative start revisions; the exact text is unverified.
ERR_NEGATIVE_START = "mvcc: required revision is a negative number"

DEFAULT_FRAGMENT_BYTES = 2 * 1024 * 1024  # max-request-bytes 1.5 MiB + 512 KiB (etcd default)
MAX_REVISIONS_PER_RESPONSE = 1000

# Events are assembled from the store's kvf bytes (a KeyValue as field 2, which is Event.kv).
_DELETE_TYPE = bytes((tag(EventField.TYPE, VARINT), 1))  # mvccpb.Event.DELETE
_PREV_KV = bytes((tag(EventField.PREV_KV, LEN),))
_EVENTS = bytes((tag(WatchResponseField.EVENTS, LEN),))
_FRAGMENT_TRUE = bool_field(WatchResponseField.FRAGMENT, True)


class _Watcher:
    __slots__ = (
        "end",
        "fragment",
        "had_events",
        "id",
        "id_field",
        "key",
        "next_rev",
        "no_delete",
        "no_put",
        "prev_kv",
        "progress_notify",
        "shape",
        "start_rev",
        "stream",
        "synced",
    )

    def __init__(
        self,
        stream: WatchStream,
        wid: int,
        key: bytes,
        end: bytes | None,
        start: int,
        c: WatchCreateRequest,
    ) -> None:
        self.stream = stream
        self.synced = False
        self.id = wid
        self.id_field = int_field(WatchResponseField.WATCH_ID, wid)  # encoded once
        self.key = key
        self.end = end  # None: single key; b"": no upper bound
        self.next_rev = start
        self.start_rev = start
        filters = {int(f) for f in c.filters}
        self.no_put = 0 in filters
        self.no_delete = 1 in filters
        self.prev_kv = c.prev_kv
        self.fragment = c.fragment
        self.progress_notify = c.progress_notify
        self.had_events = False
        # what decides which events it gets (watchers of one shape share them, see _collect)
        self.shape = (key, end, self.no_put, self.no_delete, self.prev_kv)

    def wants(self, v: KeyVersion) -> bool:
        """Does the change ``v`` concern this watcher (range and filters)?"""
        k = v.key
        end = self.end
        if end is None:
            if k != self.key:
                return False
        elif k < self.key or (end and k >= end):
            return False
        return not (self.no_delete if v.version == 0 else self.no_put)


class _Pass:
    """What one :meth:`WatchStream.next_responses` computes once for all its watchers: the
    header, and the events of each (cursor, range, filters)."""

    __slots__ = ("events", "header", "header_field")

    def __init__(self, header: bytes) -> None:
        self.header = header
        self.header_field = bytes_field(WatchResponseField.HEADER, header)
        self.events: dict[tuple[Any, ...], tuple[list[bytes], int, int]] = {}


def _response(
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
    parts = [
        bytes_field(WatchResponseField.HEADER, header),
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


class WatchStream:
    """One Watch RPC stream carrying many watchers (see the module docstring).

    Created by :meth:`WatchHub.open_stream`; driven by the API layer's servicer, which feeds
    requests to :meth:`handle_request` and, whenever ``wakeup`` fired, sends what
    :meth:`next_responses` returns until it returns an empty list.
    """

    def __init__(self, hub: WatchHub, wakeup: Callable[[], None]) -> None:
        self._hub = hub
        self._wakeup = wakeup
        self._watchers: dict[int, _Watcher] = {}
        self._next_id = 0
        # control responses: (encoded response, watch id if it is a per-watch progress)
        self._control: deque[tuple[bytes, int | None]] = deque()
        self._progress_queued: set[int] = set()
        self._progress_requested = False
        self._rr = 0
        self.closed = False

    # ------------------------------------------------------------------ requests
    def handle_request(self, req: WatchRequest) -> None:
        """Process a create, cancel or progress request; queue responses; call wakeup."""
        if self.closed:
            return
        if req.create_request is not None:
            self._create(req.create_request)
        elif req.cancel_request is not None:
            self.cancel(req.cancel_request.watch_id)
        elif req.progress_request is not None and self._watchers:
            self._progress_requested = True
            self._wakeup()

    def _create(self, c: WatchCreateRequest) -> None:
        hub = self._hub
        cur = hub.store.rev
        key = c.key or b"\x00"
        end: bytes | None = c.range_end or None
        if end == b"\x00":
            end = b""
        err = ""
        wid = c.watch_id
        if end and key >= end:
            err = ERR_EMPTY_RANGE
        elif c.start_revision < 0:
            err = ERR_NEGATIVE_START
        elif wid == 0:
            while self._next_id in self._watchers:
                self._next_id += 1
            wid = self._next_id
            self._next_id += 1
        elif wid in self._watchers:
            err = ERR_DUPLICATE_ID
        if err:
            resp = _response(hub.header(cur), -1, created=True, canceled=True, cancel_reason=err)
        else:
            start = c.start_revision or cur + 1
            w = _Watcher(self, wid, key, end, start, c)
            self._watchers[wid] = w
            if start > cur:
                hub._sync(w)  # nothing to replay: wait for writes like any synced watcher
            resp = _response(hub.header(cur), wid, created=True)
        self._control.append((resp, None))
        self._wakeup()

    def refuse(self, watch_id: int, reason: str) -> None:
        """Answer a create request the caller may not make: created and canceled at once,
        with ``reason`` (etcd's answer to a watch without read permission)."""
        hub = self._hub
        resp = _response(
            hub.header(hub.store.rev), watch_id, created=True, canceled=True, cancel_reason=reason
        )
        self._control.append((resp, None))
        self._wakeup()

    def cancel(self, watch_id: int) -> bool:
        """Cancel a watcher and queue ``{watch_id, canceled}``; False (no response) if unknown."""
        w = self._watchers.pop(watch_id, None)
        if w is None:
            return False
        self._hub._unsync(w, 0)
        self._progress_queued.discard(watch_id)
        hub = self._hub
        self._control.append((_response(hub.header(hub.store.rev), watch_id, canceled=True), None))
        self._wakeup()
        return True

    def tick_progress(self) -> None:
        """Queue ``{watch_id, header=current}`` for each progress_notify watcher that is synced
        and had no events since the previous tick (etcd's progress notification)."""
        if self.closed:
            return
        hub = self._hub
        cur = hub.store.rev
        queued = False
        for w in self._watchers.values():
            if not w.progress_notify:
                continue
            if not w.had_events and w.synced and w.id not in self._progress_queued:
                self._control.append((_response(hub.header(cur), w.id), w.id))
                self._progress_queued.add(w.id)
                queued = True
            w.had_events = False
        if queued:
            self._wakeup()

    def close(self) -> None:
        """Drop every watcher and queued response; the stream is unusable afterwards."""
        if self.closed:
            return
        self.closed = True
        for w in self._watchers.values():
            self._hub._unsync(w, 0)
        self._watchers.clear()
        self._control.clear()
        self._progress_queued.clear()
        self._progress_requested = False
        self._hub._streams.discard(self)

    # ------------------------------------------------------------------ push side
    # ------------------------------------------------------------------ pull side
    def pending(self) -> bool:
        """True if :meth:`next_responses` would return something now."""
        if self._control:
            return True
        if any(not w.synced for w in self._watchers.values()):
            return True
        return self._progress_requested

    def next_responses(self, max_bytes: int) -> list[bytes]:
        """Encoded WatchResponse messages ready to send, about ``max_bytes`` in total.

        Always returns at least one response when anything is pending (a single revision
        larger than ``max_bytes`` is returned whole); returns [] when fully caught up. Call
        again until it returns [] (when it stops early for the budget it also calls
        ``wakeup()``, so a sender that sends one batch per wakeup makes progress too).
        """
        out: list[bytes] = []
        size = 0
        control = self._control
        while control and (size < max_bytes or not out):
            data, progress_id = control.popleft()
            if progress_id is not None:
                self._progress_queued.discard(progress_id)
            out.append(data)
            size += len(data)
        if size >= max_bytes:
            self._wakeup()
            return out
        hub = self._hub
        store = hub.store
        cur = store.rev
        watchers = list(self._watchers.values())
        n = len(watchers)
        if n:
            batch = _Pass(hub.header(cur))
            first = self._rr % n
            for i in range(n):
                w = watchers[(first + i) % n]
                if w.synced:
                    continue
                while w.next_rev <= cur and w.id in self._watchers:
                    if size >= max_bytes and out:
                        self._rr = first + i
                        self._wakeup()  # more to send: keep the sender going
                        return out
                    for resp in self._collect(w, cur, max_bytes - size, batch):
                        out.append(resp)
                        size += len(resp)
                if w.id in self._watchers:
                    hub._sync(w)  # caught up
            self._rr = first + 1
        if self._progress_requested and all(w.synced for w in self._watchers.values()):
            self._progress_requested = False
            if self._watchers:
                out.append(_response(hub.header(cur), -1))
        return out

    def _collect(self, w: _Watcher, cur: int, budget: int, batch: _Pass) -> list[bytes]:
        """The next response(s) of ``w``: whole revisions from its cursor, or a cancel.

        Watchers of the same range with the same filters and cursor get the same events:
        ``batch`` (one per :meth:`next_responses`, at one revision) keeps them, so a thousand
        watchers of one key encode each event once (as etcd's watchableStore notifies a
        group of watchers with one event list)."""
        hub = self._hub
        store = hub.store
        if w.next_rev < store.compact_rev:
            del self._watchers[w.id]
            hub._unsync(w, 0)
            self._progress_queued.discard(w.id)
            compact = store.compact_rev
            return [_response(hub.header(0), w.id, canceled=True, compact_revision=compact)]
        sig = (w.next_rev, w.shape)
        known = batch.events.get(sig)
        if known is not None and known[2] <= budget:
            events, stop, _ = known
        else:
            events, stop, _ = batch.events[sig] = self._events(w, cur, budget)
        w.next_rev = stop + 1
        if not events:
            return []
        w.had_events = True
        if w.fragment and len(events) > 1:
            return _fragments(batch.header, w.id, events, hub.fragment_bytes)
        # _response(header, w.id, events=events): its other fields are all defaults
        return [b"".join((batch.header_field, w.id_field, *events))]

    def _events(self, w: _Watcher, cur: int, budget: int) -> tuple[list[bytes], int, int]:
        """The encoded events of ``w`` from its cursor (whole revisions within ``budget``),
        the last revision they cover, and their size."""
        store = self._hub.store
        events: list[bytes] = []
        size = 0
        revs = 0
        stop = cur
        get = store.get
        for r, changes in store.events(w.next_rev, cur):
            evs = []
            esize = 0
            for v in changes:
                if not w.wants(v):
                    continue
                ev = _DELETE_TYPE + v.kvf if v.version == 0 else v.kvf  # kvf: Event.kv
                if w.prev_kv and v.version != 1:
                    p = get(v.key, r - 1)
                    if p is not None:
                        ev += _PREV_KV + p.kvf[1:]  # retagged as Event.prev_kv
                ev = _EVENTS + encode_varint(len(ev)) + ev
                evs.append(ev)
                esize += len(ev)
            if not evs:
                continue
            if events and (size + esize > budget or revs >= MAX_REVISIONS_PER_RESPONSE):
                stop = r - 1
                break
            events += evs
            size += esize
            revs += 1
        return events, stop, size

    # ------------------------------------------------------------------ invariants
    def _check(self) -> None:
        """Assert the stream's invariants (see the module docstring)."""
        if self.closed:
            assert not self._watchers
            assert not self._control
            assert self not in self._hub._streams
            return
        assert self in self._hub._streams
        cur = self._hub.store.rev
        hub = self._hub
        for wid, w in self._watchers.items():
            assert w.id == wid
            assert w.stream is self
            assert hub._indexed(w) == w.synced
            if not w.synced:
                assert 1 <= w.next_rev <= cur + 1, (w.next_rev, cur)
            if w.end:
                assert w.key < w.end
        assert self._progress_queued <= set(self._watchers)
        pq = {wid for _, wid in self._control if wid is not None}
        assert pq == self._progress_queued


def _fragments(header: bytes, wid: int, events: list[bytes], limit: int) -> list[bytes]:
    """etcd's sendFragments: split only if the response is >= limit and has >= 2 events."""
    fixed = (
        len(bytes_field(WatchResponseField.HEADER, header))
        + len(int_field(WatchResponseField.WATCH_ID, wid))
        + len(_FRAGMENT_TRUE)
    )
    total = fixed + sum(len(e) for e in events)
    if total < limit:
        return [_response(header, wid, events=events)]
    out: list[bytes] = []
    cur: list[bytes] = []
    size = fixed
    for ev in events:
        if cur and size + len(ev) >= limit:
            out.append(_response(header, wid, fragment=True, events=cur))
            cur, size = [], fixed
        cur.append(ev)
        size += len(ev)
    out.append(_response(header, wid, events=cur))
    return out


class WatchHub:
    """All watch streams over one KVStore (see the module docstring).

    Args:
        store: the store whose writes are watched (the hub registers itself as a listener).
        header: ``header(revision)`` -> encoded ResponseHeader for that revision (API layer).
        fragment_bytes: response size from which fragment-enabled watchers get fragments.
    """

    def __init__(
        self,
        store: KVStore,
        header: Callable[[int], bytes],
        fragment_bytes: int = DEFAULT_FRAGMENT_BYTES,
    ) -> None:
        self.store = store
        self.header = header
        self.fragment_bytes = fragment_bytes
        self._streams: set[WatchStream] = set()
        self._key_watchers: dict[bytes, set[_Watcher]] = {}  # synced single-key watchers
        self._range_watchers: set[_Watcher] = set()  # synced range watchers
        store.add_listener(self._on_write)

    def counts(self) -> tuple[int, int]:
        """``(watchers, slow watchers)``: every watcher, and those not caught up with the
        store (etcd's etcd_debugging_mvcc_watcher_total and _slow_watcher_total)."""
        watchers = sum(len(s._watchers) for s in self._streams)
        synced = sum(map(len, self._key_watchers.values())) + len(self._range_watchers)
        return watchers, watchers - synced

    def open_stream(self, wakeup: Callable[[], None]) -> WatchStream:
        """Open a stream; ``wakeup()`` is called whenever it may have something to send."""
        s = WatchStream(self, wakeup)
        self._streams.add(s)
        return s

    def set_store(self, store: KVStore) -> None:
        """Switch to ``store`` (e.g. after a snapshot restore) and wake every stream.

        Watchers keep their cursors and catch up from the new store's history (or are
        cancelled with compact_revision if it no longer has it).
        """
        old_rev = self.store.rev
        self.store.remove_listener(self._on_write)
        self.store = store
        store.add_listener(self._on_write)
        for s in list(self._streams):
            for w in list(s._watchers.values()):
                if w.synced:
                    resume = max(old_rev + 1, w.start_rev)
                    if resume <= store.rev:
                        self._unsync(w, resume)
            s._wakeup()

    # ------------------------------------------------------------------ synced index
    def _sync(self, w: _Watcher) -> None:
        """Mark ``w`` caught up and index it for the push side."""
        if w.synced:
            return
        w.synced = True
        if w.end is None:
            self._key_watchers.setdefault(w.key, set()).add(w)
        else:
            self._range_watchers.add(w)

    def _unsync(self, w: _Watcher, next_rev: int) -> None:
        """Take ``w`` out of the index; it resumes at ``next_rev`` (0 when it is going away)."""
        if w.synced:
            w.synced = False
            if w.end is None:
                ws = self._key_watchers[w.key]
                ws.discard(w)
                if not ws:
                    del self._key_watchers[w.key]
            else:
                self._range_watchers.discard(w)
        if next_rev:
            w.next_rev = next_rev

    def _indexed(self, w: _Watcher) -> bool:
        if w.end is None:
            return w in self._key_watchers.get(w.key, ())
        return w in self._range_watchers

    def _on_write(self, rev: int) -> None:
        """Push side: unsync and wake the synced watchers that the changes of ``rev`` concern."""
        changes = self.store.changes(rev)
        hit: set[_Watcher] = set()
        by_key = self._key_watchers
        if by_key:
            for v in changes:
                ws = by_key.get(v.key)
                if ws:
                    hit.update(w for w in ws if w.wants(v))
        for w in self._range_watchers:
            for v in changes:
                if w.wants(v):
                    hit.add(w)
                    break
        woken: set[WatchStream] = set()
        for w in hit:
            if rev >= w.start_rev:
                self._unsync(w, rev)
                woken.add(w.stream)
        for st in woken:
            st._wakeup()

    def _check(self) -> None:
        """Assert the hub's and every stream's invariants."""
        assert self._on_write in self.store._listeners
        synced: set[_Watcher] = set()
        for s in self._streams:
            assert not s.closed
            s._check()
            synced.update(w for w in s._watchers.values() if w.synced)
        indexed = set(self._range_watchers)
        for key, ws in self._key_watchers.items():
            assert ws
            assert all(w.key == key and w.end is None for w in ws)
            indexed |= ws
        assert indexed == synced
