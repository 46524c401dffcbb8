"""WatchHub: fan-out of store changes to Watch streams.

Theory of operation
-------------------
A :class:`WatchHub` sits next to one :class:`~coord.server.mvcc.KVStore` and owns the open
:class:`WatchStream` objects (one per Watch RPC). Every watcher is a *cursor* (``next_rev``,
the next revision it still has to look at) plus its key range and options; the store keeps
the history (``store.events``), so a watcher that falls behind costs O(1) state however far
behind it is, and writers never wait for anyone.

A watcher is *synced* (etcd's synced group) when it has seen everything up to the current
revision; its cursor is then implicit (current revision + 1, or its start revision if that is
in the future). Otherwise it is *unsynced* and ``next_rev`` says where to resume.

Push side (in the writer's call stack, as etcd's watchableStore.notify): after each write that
bumps the revision to R the store calls the hub, which asks each group of synced watchers of one
shape (:mod:`.synced`) whether it wants a change of R, encodes the events once per group, and
appends one entry per (group, stream) to that stream's queue: the header, the events and the
tuple of the watchers' encoded ids. The cost is O(changes x groups + streams), whatever the
number of watchers. A stream whose queue already holds ``queue_bytes`` of events is not
queued to: its watchers of that group become unsynced with ``next_rev = R`` and catch up from
history later (etcd moves them to its victims), so a slow client costs bounded memory.
``wakeup()`` is called once per stream that got something (it only sets a flag/event for the
stream's sender task).

Pull side (in each stream's sender task): :meth:`WatchStream.next_responses` returns fully
encoded WatchResponse messages, at most about ``max_bytes`` of them, and is called until it
returns an empty list. It emits, in order:

1. the queue, in order: control responses (created, canceled, per-watch progress) as they were
   queued, and pushed entries as one response per watcher (``header.revision`` = the event's
   revision, as etcd). One queue keeps a watcher's "created" before its events and its events
   before its "canceled";
2. event batches for the unsynced watchers, visiting them round-robin: each response holds
   the events of one watcher for one or more whole revisions (up to 1000 revisions, or until
   the byte budget is used), assembled from the stored KeyValue bytes, with
   ``header.revision`` = the store revision at send time. A revision is never split, except for
   a watcher created with ``fragment`` whose response exceeds ``fragment_bytes`` (then etcd's
   fragment algorithm applies). A watcher whose cursor fell below the compaction revision is
   removed and gets ``{canceled, compact_revision}`` (header revision 0, as etcd). A watcher
   that caught up becomes synced;
3. a stream-wide progress response (``watch_id -1``, header = current revision) if one was
   requested and every watcher of the stream is now caught up.

A slow client only delays its own stream: its queue stops growing at ``queue_bytes`` and its
cursors lag and later catch up from history (or are cancelled with compact_revision if
compaction overtook them).

Watch IDs are per stream; auto IDs start at 0 and skip IDs in use; a client-chosen non-zero ID
is honoured. Create failures (empty range, duplicate ID) answer ``created`` + ``canceled`` with
``watch_id -1`` and etcd's cancel_reason text.

Invariants (:meth:`WatchStream._check`, :meth:`WatchHub._check`): the synced index holds
exactly the synced watchers of open streams; an unsynced cursor is in [1, current + 1]; a
stream's queued bytes are the sum of its pushed entries' events; a closed stream holds nothing
and is unknown to the hub; the hub is a listener of its store.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from coord._pb.etcdserverpb import WatchCreateRequest, WatchRequest
from coord._protowire import WatchResponseField, int_field
from coord.server.mvcc import KVStore

from .responses import event, fragments, header_field, response
from .synced import Group, SyncedIndex, wants

__all__ = ["WatchHub", "WatchStream"]

ERR_EMPTY_RANGE = "mvcc: watcher range is empty"
ERR_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
# etcd >= 3.5.24 / 3.6.6 rejects negative start revisions; the exact text is unverified.
ERR_NEGATIVE_START = "mvcc: required revision is a negative number"

DEFAULT_FRAGMENT_BYTES = 2 * 1024 * 1024  # max-request-bytes 1.5 MiB + 512 KiB (etcd default)
#: Events a stream's queue may hold before its synced watchers fall back to history.
DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024
MAX_REVISIONS_PER_RESPONSE = 1000

#: A queue entry: (head, ids, tail, progress watch id). A control response is ``head`` alone
#: (``ids`` None); a pushed entry stands for ``head + id + tail`` for each id of ``ids``.
_Entry = tuple[bytes, tuple[bytes, ...] | None, bytes, int | None]


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
        "waiting",
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
        self.waiting = False  # synced, and waiting for its future start revision
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
        # what decides which events it gets and how they are sent (see .synced)
        self.shape = (
            key,
            end,
            self.no_put,
            self.no_delete,
            self.prev_kv,
            self.fragment,
            self.progress_notify,
        )

    wants = wants


class _Pass:
    """What one :meth:`WatchStream.next_responses` computes once for all its watchers: the
    header, and the events of each (cursor, shape)."""

    __slots__ = ("events", "header", "header_field")

    def __init__(self, header: bytes) -> None:
        self.header = header
        self.header_field = header_field(header)
        self.events: dict[tuple[Any, ...], tuple[list[bytes], int, int]] = {}


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
        self._queue: deque[_Entry] = deque()
        self._queued = 0  # bytes of pushed events in the queue
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
            resp = response(hub.header(cur), -1, created=True, canceled=True, cancel_reason=err)
        else:
            start = c.start_revision or cur + 1
            w = _Watcher(self, wid, key, end, start, c)
            self._watchers[wid] = w
            if start > cur:
                hub._sync(w)  # nothing to replay: wait for writes like any synced watcher
            resp = response(hub.header(cur), wid, created=True)
        self._control(resp)

    def _control(self, resp: bytes, progress_id: int | None = None) -> None:
        self._queue.append((resp, None, b"", progress_id))
        self._wakeup()

    def refuse(self, watch_id: int, reason: str) -> None:
        """Answer a create request the caller may not make: created and canceled at once,
        with ``reason`` (etcd's answer to a watch without read permission)."""
        hub = self._hub
        head = hub.header(hub.store.rev)
        self._control(response(head, watch_id, created=True, canceled=True, cancel_reason=reason))

    def cancel(self, watch_id: int) -> bool:
        """Cancel a watcher and queue ``{watch_id, canceled}``; False (no response) if unknown."""
        w = self._watchers.pop(watch_id, None)
        if w is None:
            return False
        self._hub._unsync(w, 0)
        self._progress_queued.discard(watch_id)
        hub = self._hub
        self._control(response(hub.header(hub.store.rev), watch_id, canceled=True))
        return True

    def tick_progress(self) -> None:
        """Queue ``{watch_id, header=current}`` for each progress_notify watcher that is synced
        and had no events since the previous tick (etcd's progress notification)."""
        if self.closed:
            return
        hub = self._hub
        cur = hub.store.rev
        for w in self._watchers.values():
            if not w.progress_notify:
                continue
            if not w.had_events and w.synced and w.id not in self._progress_queued:
                self._control(response(hub.header(cur), w.id), w.id)
                self._progress_queued.add(w.id)
            w.had_events = False

    def close(self) -> None:
        """Drop every watcher and queued response; the stream is unusable afterwards."""
        if self.closed:
            return
        self.closed = True
        for w in self._watchers.values():
            self._hub._unsync(w, 0)
        self._watchers.clear()
        self._queue.clear()
        self._queued = 0
        self._progress_queued.clear()
        self._progress_requested = False
        self._hub._streams.discard(self)

    # ------------------------------------------------------------------ push side
    def _push(self, g: Group[_Watcher], head: bytes, events: list[bytes], rev: int) -> None:
        """Queue the events of revision ``rev`` for this stream's watchers in ``g``, or, past
        the queue's bound, let them catch up from history."""
        tail = b"".join(events)
        members = g.members[self]
        if self._queue and self._queued + len(tail) > self._hub.queue_bytes:
            for w in list(members.values()):
                self._hub._unsync(w, rev)
            return
        if g.progress_notify:
            for w in members.values():
                w.had_events = True
        limit = self._hub.fragment_bytes
        if g.fragment and len(events) > 1 and len(head) + len(tail) + 16 >= limit:
            header = self._hub.header(rev)
            for w in members.values():
                for resp in fragments(header, w.id, events, limit):
                    self._queue.append((b"", (b"",), resp, None))  # one message: resp
                    self._queued += len(resp)
            return
        self._queue.append((head, g.ids(self), tail, None))
        self._queued += len(tail)

    # ------------------------------------------------------------------ pull side
    def pending(self) -> bool:
        """True if :meth:`next_responses` would return something now."""
        if self._queue:
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
        size = self._drain(out, max_bytes)
        if size >= max_bytes:
            self._wakeup()
            return out
        hub = self._hub
        cur = hub.store.rev
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
                out.append(response(hub.header(cur), -1))
        return out

    def _drain(self, out: list[bytes], max_bytes: int) -> int:
        """Move queued responses to ``out`` while within ``max_bytes``; their size."""
        queue = self._queue
        size = 0
        while queue and (size < max_bytes or not out):
            head, ids, tail, progress_id = queue.popleft()
            if ids is None:
                if progress_id is not None:
                    self._progress_queued.discard(progress_id)
                out.append(head)
                size += len(head)
                continue
            each = len(head) + len(ids[0]) + len(tail)
            room = max(1, (max_bytes - size) // each)
            if room < len(ids):  # the rest waits for the next call
                queue.appendleft((head, ids[room:], tail, None))
                ids = ids[:room]
            else:
                self._queued -= len(tail)
            out += [head + i + tail for i in ids]
            size += each * len(ids)
        return size

    def _collect(self, w: _Watcher, cur: int, budget: int, batch: _Pass) -> list[bytes]:
        """The next response(s) of ``w``: whole revisions from its cursor, or a cancel.

        Watchers of the same shape and cursor get the same events: ``batch`` (one per
        :meth:`next_responses`, at one revision) keeps them, so a thousand watchers of one key
        encode each event once."""
        hub = self._hub
        store = hub.store
        if w.next_rev < store.compact_rev:
            del self._watchers[w.id]
            hub._unsync(w, 0)
            self._progress_queued.discard(w.id)
            compact = store.compact_rev
            return [response(hub.header(0), w.id, canceled=True, compact_revision=compact)]
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
            return fragments(batch.header, w.id, events, hub.fragment_bytes)
        # response(header, w.id, events=events): its other fields are all defaults
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
            evs = [
                event(v, get(v.key, r - 1) if w.prev_kv and v.version != 1 else None)
                for v in changes
                if w.wants(v)
            ]
            if not evs:
                continue
            esize = sum(map(len, evs))
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
            assert not self._queue
            assert not self._queued
            assert self not in self._hub._streams
            return
        assert self in self._hub._streams
        cur = self._hub.store.rev
        hub = self._hub
        for wid, w in self._watchers.items():
            assert w.id == wid
            assert w.stream is self
            assert hub._synced.contains(w) == w.synced
            if not w.synced:
                assert 1 <= w.next_rev <= cur + 1, (w.next_rev, cur)
            if w.end:
                assert w.key < w.end
        assert self._progress_queued <= set(self._watchers)
        pq = {e[3] for e in self._queue if e[3] is not None}
        assert pq == self._progress_queued
        assert self._queued == sum(len(e[2]) for e in self._queue if e[1] is not None)


class WatchHub:
    """All watch streams over one KVStore (see the module docstring).

    Args:
        store: the store whose writes are watched (the hub registers itself as a listener).
        header: ``header(revision)`` -> encoded ResponseHeader for that revision (API layer).
        fragment_bytes: response size from which fragment-enabled watchers get fragments.
        queue_bytes: events a stream may have queued before its watchers fall back to history.
    """

    def __init__(
        self,
        store: KVStore,
        header: Callable[[int], bytes],
        fragment_bytes: int = DEFAULT_FRAGMENT_BYTES,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
    ) -> None:
        self.store = store
        self.header = header
        self.fragment_bytes = fragment_bytes
        self.queue_bytes = queue_bytes
        self._streams: set[WatchStream] = set()
        self._synced: SyncedIndex[_Watcher] = SyncedIndex()
        store.add_listener(self._on_write)

    def counts(self) -> tuple[int, int]:
        """``(watchers, slow watchers)``: every watcher, and those not caught up with the
        store (etcd's etcd_debugging_mvcc_watcher_total and _slow_watcher_total)."""
        watchers = sum(len(s._watchers) for s in self._streams)
        return watchers, watchers - self._synced.synced_count()

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
        if not w.synced:
            w.synced = True
            self._synced.add(w, self.store.rev)

    def _unsync(self, w: _Watcher, next_rev: int) -> None:
        """Take ``w`` out of the index; it resumes at ``next_rev`` (0 when it is going away)."""
        if w.synced:
            w.synced = False
            self._synced.remove(w)
        if next_rev:
            w.next_rev = next_rev

    def _on_write(self, rev: int) -> None:
        """Push side: queue the events of ``rev`` for the synced watchers they concern."""
        index = self._synced
        if not index:
            return
        index.promote(rev)
        head = b""
        woken: dict[WatchStream, None] = {}
        get = self.store.get
        for g, changes in index.matching(self.store.changes(rev)):
            if not head:
                head = header_field(self.header(rev))
            prev_kv = g.prev_kv
            events = [
                event(v, get(v.key, rev - 1) if prev_kv and v.version != 1 else None)
                for v in changes
            ]
            for stream in list(g.members):
                stream._push(g, head, events, rev)
                woken[stream] = None
        for stream in woken:
            stream._wakeup()

    def _check(self) -> None:
        """Assert the hub's and every stream's invariants."""
        assert self._on_write in self.store._listeners
        self._synced._check(self.store.rev)
        synced = 0
        for s in self._streams:
            assert not s.closed
            s._check()
            synced += sum(1 for w in s._watchers.values() if w.synced)
        assert synced == self._synced.synced_count()
