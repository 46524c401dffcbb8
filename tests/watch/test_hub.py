"""WatchHub tests, sans-IO: a fake client drives streams directly, etcd's semantics."""

from __future__ import annotations

from typing import Any

import pytest
from unwrap import unwrap

from coord._pb.etcdserverpb import (
    DeleteRangeRequest,
    PutRequest,
    RequestOp,
    ResponseHeader,
    TxnRequest,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchCreateRequestFilterType,
    WatchProgressRequest,
    WatchRequest,
    WatchResponse,
)
from coord._pb.mvccpb import Event, EventEventType, KeyValue
from coord.server.mvcc import KVStore
from coord.server.watch import WatchHub

NOPUT = WatchCreateRequestFilterType.NOPUT
NODELETE = WatchCreateRequestFilterType.NODELETE


def header(rev: int) -> bytes:
    return bytes(ResponseHeader(cluster_id=11, member_id=22, revision=rev, raft_term=3))


class Client:
    """Plays the API layer's sender task for one stream."""

    def __init__(self, hub: WatchHub) -> None:
        self.wakeups = 0
        self.stream = hub.open_stream(self.wake)

    def wake(self) -> None:
        self.wakeups += 1

    def create(self, key: bytes, end: bytes = b"", **kw: Any) -> None:
        c = WatchCreateRequest(key=key, range_end=end, **kw)
        self.stream.handle_request(WatchRequest(create_request=c))

    def cancel(self, wid: int) -> None:
        req = WatchRequest(cancel_request=WatchCancelRequest(watch_id=wid))
        self.stream.handle_request(req)

    def progress(self) -> None:
        self.stream.handle_request(WatchRequest(progress_request=WatchProgressRequest()))

    def drain(self, max_bytes: int = 1 << 20) -> list[WatchResponse]:
        out = []
        while batch := self.stream.next_responses(max_bytes):
            out += [WatchResponse.parse(b) for b in batch]
        return out


@pytest.fixture
def store() -> KVStore:
    s = KVStore()
    s.lease_exists = lambda _lease: True
    return s


@pytest.fixture
def hub(store: KVStore) -> WatchHub:
    return WatchHub(store, header)


def put(s: KVStore, key: bytes, value: bytes = b"v", **kw: Any) -> None:
    s.put(PutRequest(key=key, value=value, **kw))


def delete(s: KVStore, key: bytes, end: bytes = b"") -> None:
    s.delete_range(DeleteRangeRequest(key=key, range_end=end))


def evs(resps: list[WatchResponse]) -> list[tuple[int, str, bytes, int]]:
    """(watch_id, type, key, mod_revision) of every event, in order."""
    return [
        (
            r.watch_id,
            "D" if e.type == EventEventType.DELETE else "P",
            unwrap(e.kv).key,
            unwrap(e.kv).mod_revision,
        )
        for r in resps
        for e in r.events
    ]


def prevs(resps: list[WatchResponse]) -> list[tuple[int, bytes | None]]:
    """(mod_revision, prev_kv value or None) of every event."""
    return [
        (unwrap(e.kv).mod_revision, e.prev_kv.value if e.prev_kv else None)
        for r in resps
        for e in r.events
    ]


def put_ops(fmt: bytes, n: int) -> list[RequestOp]:
    return [RequestOp(request_put=PutRequest(key=fmt % i, value=b"x" * 100)) for i in range(n)]


# ------------------------------------------------------------------ creation and ids
def test_created_precedes_events_and_ids_start_at_zero(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    put(store, b"a")  # 2
    c.create(b"a")
    c.create(b"b", b"c")
    put(store, b"a")  # 3
    put(store, b"b1")  # 4
    resps = c.drain()
    assert [(r.watch_id, r.created) for r in resps[:2]] == [(0, True), (1, True)]
    assert unwrap(resps[0].header).revision == 2  # revision at creation
    assert (unwrap(resps[0].header).cluster_id, unwrap(resps[0].header).raft_term) == (11, 3)
    assert evs(resps) == [(0, "P", b"a", 3), (1, "P", b"b1", 4)]
    # synced watchers get each revision as it happens, under its own revision (etcd's notify)
    assert [unwrap(r.header).revision for r in resps[2:]] == [3, 4]
    hub._check()


def test_catching_up_responses_carry_the_revision_at_send_time(
    store: KVStore, hub: WatchHub
) -> None:
    put(store, b"a")  # 2
    put(store, b"a")  # 3
    c = Client(hub)
    c.create(b"a", start_revision=2)
    put(store, b"b")  # 4
    resps = c.drain()
    assert evs(resps) == [(0, "P", b"a", 2), (0, "P", b"a", 3)]
    assert [unwrap(r.header).revision for r in resps] == [3, 4]  # created, then events
    hub._check()


def test_client_chosen_and_duplicate_ids(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"a", watch_id=1)
    c.create(b"a")  # auto: 0
    c.create(b"a")  # auto: skips 1 (in use) -> 2
    c.create(b"a", watch_id=2)  # duplicate
    resps = c.drain()
    assert [r.watch_id for r in resps] == [1, 0, 2, -1]
    dup = resps[3]
    assert dup.created
    assert dup.canceled
    assert dup.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"


def test_empty_range_is_rejected_and_empty_key_means_nul(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"b", b"a")
    c.create(b"b", b"b")
    c.create(b"", b"\x00")  # everything
    c.create(b"")  # the key "\x00"
    resps = c.drain()
    for r in resps[:2]:
        assert (r.watch_id, r.created, r.canceled) == (-1, True, True)
        assert r.cancel_reason == "mvcc: watcher range is empty"
    assert [r.watch_id for r in resps[2:]] == [0, 1]
    put(store, b"x")
    put(store, b"\x00")
    # order across watchers is free; per watcher it is exact
    got = sorted(evs(c.drain()))
    assert got == sorted([(0, "P", b"x", 2), (0, "P", b"\x00", 3), (1, "P", b"\x00", 3)])


# ------------------------------------------------------------------ history, order
def test_start_revision_replays_history_and_future_waits(store: KVStore, hub: WatchHub) -> None:
    for i in range(5):
        put(store, b"k", b"%d" % i)  # 2..6
    c = Client(hub)
    c.create(b"k", start_revision=3)
    c.create(b"k", start_revision=8)
    c.create(b"k")  # now
    resps = c.drain()
    assert evs(resps) == [(0, "P", b"k", r) for r in (3, 4, 5, 6)]
    put(store, b"k")  # 7
    put(store, b"k")  # 8
    got = evs(c.drain())
    # order across watchers is free; per watcher it must be exact
    assert [e[3] for e in got if e[0] == 0] == [7, 8]
    assert [e[3] for e in got if e[0] == 1] == [8]
    assert [e[3] for e in got if e[0] == 2] == [7, 8]
    hub._check()


def test_per_watcher_order_is_exact(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"k", start_revision=2)
    c.create(b"k", start_revision=3)
    for _ in range(4):
        put(store, b"k")  # 2..5
    got = evs(c.drain())
    assert [e[3] for e in got if e[0] == 0] == [2, 3, 4, 5]
    assert [e[3] for e in got if e[0] == 1] == [3, 4, 5]


def test_one_revision_is_never_split(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"p/", b"p0")
    c.drain()
    ops = put_ops(b"p/%03d", 50)
    store.txn(TxnRequest(success=ops))
    put(store, b"p/single")
    resps = c.drain(max_bytes=500)  # far smaller than the txn's events
    assert len(resps[0].events) == 50
    assert {unwrap(e.kv).mod_revision for e in resps[0].events} == {2}
    assert [unwrap(e.kv).key for e in resps[0].events] == [b"p/%03d" % i for i in range(50)]
    assert evs(resps[1:]) == [(0, "P", b"p/single", 3)]


def test_max_bytes_bounds_each_call(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"k", start_revision=1)
    for _ in range(200):
        put(store, b"k", b"y" * 100)
    batches = []
    while batch := c.stream.next_responses(2000):
        batches.append(batch)
    assert len(batches) > 5
    for batch in batches:
        assert sum(map(len, batch)) <= 2000 + 200  # budget + at most one revision
    got = [WatchResponse.parse(b) for batch in batches for b in batch]
    assert [unwrap(e.kv).mod_revision for r in got for e in r.events] == list(range(2, 202))


# ------------------------------------------------------------------ options
def test_prev_kv(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"k", prev_kv=True)
    put(store, b"k", b"1")  # 2: creation, no prev
    put(store, b"k", b"2")  # 3: prev = 1
    delete(store, b"k")  # 4: prev = 2
    resps = c.drain()
    got = prevs(resps)
    assert got == [(2, None), (3, b"1"), (4, b"2")]
    # deleted event kv has only key and mod_revision
    dele = resps[-1].events[-1]
    assert dele.kv == KeyValue(key=b"k", mod_revision=4)


def test_prev_kv_omitted_when_compacted(store: KVStore, hub: WatchHub) -> None:
    put(store, b"k", b"1")  # 2
    put(store, b"k", b"2")  # 3
    put(store, b"k", b"3")  # 4
    store.compact(3)
    c = Client(hub)
    c.create(b"k", start_revision=3, prev_kv=True)
    resps = c.drain()
    got = prevs(resps)
    assert got == [(3, None), (4, b"2")]  # rev 2 was compacted away


def test_filters(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"k", filters=[NOPUT])
    c.create(b"k", filters=[NODELETE])
    put(store, b"k")
    delete(store, b"k")
    assert sorted(evs(c.drain())) == [(0, "D", b"k", 3), (1, "P", b"k", 2)]


def test_fragment(store: KVStore) -> None:
    hub = WatchHub(store, header, fragment_bytes=1000)
    c = Client(hub)
    c.create(b"p/", b"p0", fragment=True)
    c.create(b"p/", b"p0")
    c.drain()
    ops = put_ops(b"p/%02d", 30)
    store.txn(TxnRequest(success=ops))
    resps = c.drain()
    frag = [r for r in resps if r.watch_id == 0]
    whole = [r for r in resps if r.watch_id == 1]
    assert len(whole) == 1
    assert len(whole[0].events) == 30
    assert len(frag) > 2
    assert [r.fragment for r in frag] == [True] * (len(frag) - 1) + [False]
    assert [unwrap(e.kv).key for r in frag for e in r.events] == [b"p/%02d" % i for i in range(30)]
    assert all(len(bytes(r)) < 1000 for r in frag)


# ------------------------------------------------------------------ cancel, compaction
def test_cancel(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"k")
    c.drain()
    put(store, b"k")
    c.cancel(0)
    c.cancel(42)  # unknown: no response at all
    resps = c.drain()
    # the event came before the cancel, so it is delivered first; nothing follows the cancel
    assert [(r.watch_id, r.canceled, unwrap(r.header).revision) for r in resps] == [
        (0, False, 2),
        (0, True, 2),
    ]
    assert evs(resps) == [(0, "P", b"k", 2)]
    put(store, b"k")
    assert c.drain() == []


def test_compacted_start_revision(store: KVStore, hub: WatchHub) -> None:
    for _ in range(5):
        put(store, b"k")  # 2..6
    store.compact(4)
    c = Client(hub)
    c.create(b"k", start_revision=3)
    c.create(b"k", start_revision=4)  # at the compaction revision: fine
    resps = c.drain()
    assert (resps[0].watch_id, resps[0].created, resps[0].canceled) == (0, True, False)
    assert (resps[1].watch_id, resps[1].created) == (1, True)
    cancel = next(r for r in resps if r.canceled)
    assert (cancel.watch_id, cancel.compact_revision, unwrap(cancel.header).revision) == (0, 4, 0)
    assert [e[3] for e in evs(resps) if e[0] == 1] == [4, 5, 6]
    assert resps.index(cancel) > 0
    hub._check()


def test_delete_at_the_compaction_revision_is_delivered(store: KVStore, hub: WatchHub) -> None:
    put(store, b"k")  # 2
    delete(store, b"k")  # 3
    store.compact(3)
    c = Client(hub)
    c.create(b"k", start_revision=3)
    assert evs(c.drain()) == [(0, "D", b"k", 3)]


def test_lagging_watcher_overtaken_by_compaction(store: KVStore) -> None:
    hub = WatchHub(store, header, queue_bytes=1)  # one queued revision, then history
    slow = Client(hub)
    slow.create(b"k")
    slow.drain()
    for _ in range(10):
        put(store, b"k")  # 2..11
    hub._check()
    store.compact(8)
    resps = slow.drain()
    assert evs(resps) == [(0, "P", b"k", 2)]  # queued before it fell behind
    assert len(resps) == 2
    assert (resps[1].canceled, resps[1].compact_revision) == (True, 8)
    hub._check()


# ------------------------------------------------------------------ progress
def test_progress_request(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.progress()  # no watchers: no reply
    assert c.drain() == []
    c.create(b"k", start_revision=1)
    for _ in range(3):
        put(store, b"k")
    c.progress()
    resps = c.drain()
    last = resps[-1]
    assert (last.watch_id, unwrap(last.header).revision, last.events) == (-1, 4, [])
    assert max(e[3] for e in evs(resps)) == 4  # every event <= 4 was sent before it


def test_progress_request_waits_for_sync(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"k", start_revision=1)
    for _ in range(100):
        put(store, b"k", b"z" * 50)
    c.progress()
    first = c.stream.next_responses(500)
    assert all(WatchResponse.parse(b).watch_id != -1 for b in first)
    rest = c.drain()
    assert rest[-1].watch_id == -1
    assert unwrap(rest[-1].header).revision == 101


def test_tick_progress(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"k", progress_notify=True)
    c.create(b"j")
    c.drain()
    c.stream.tick_progress()
    c.stream.tick_progress()  # coalesced while not drained
    resps = c.drain()
    assert [(r.watch_id, unwrap(r.header).revision, r.events) for r in resps] == [(0, 1, [])]
    put(store, b"k")
    c.drain()
    c.stream.tick_progress()  # had events since the last tick: nothing
    assert c.drain() == []
    c.stream.tick_progress()
    assert [r.watch_id for r in c.drain()] == [0]


# ------------------------------------------------------------------ isolation, wakeups
def test_slow_stream_blocks_nobody(store: KVStore) -> None:
    hub = WatchHub(store, header, queue_bytes=2000)
    slow, fast = Client(hub), Client(hub)
    slow.create(b"k")
    fast.create(b"k")
    fast.drain()
    for i in range(3000):
        put(store, b"k", b"%d" % i)
        if i % 100 == 0:
            assert len(fast.drain()) >= 1
        # the slow stream's queue stops at its bound: then its watcher waits on a cursor
        assert slow.stream._queued <= 2000
    assert store.rev == 3001
    assert len(slow.stream._queue) <= 2 + 2000 // 10  # "created", then events of >= 10 bytes
    assert not slow.stream._watchers[0].synced
    hub._check()
    fast.drain()
    got = slow.drain()
    assert [e[3] for e in evs(got)] == list(range(2, 3002))
    hub._check()


def test_wakeup_only_when_relevant(store: KVStore, hub: WatchHub) -> None:
    a, b = Client(hub), Client(hub)
    a.create(b"a")
    b.create(b"b")
    a.drain()
    b.drain()
    wa, wb = a.wakeups, b.wakeups
    put(store, b"a")
    assert (a.wakeups, b.wakeups) == (wa + 1, wb)
    assert b.drain() == []
    assert evs(a.drain()) == [(0, "P", b"a", 2)]
    hub._check()


def test_close(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"k")
    c.stream.close()
    put(store, b"k")
    assert c.drain() == []
    hub._check()
    c.stream._check()


def test_set_store_after_restore(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    c.create(b"k")
    c.drain()
    other = KVStore()
    for _ in range(3):
        other.put(PutRequest(key=b"k"))
    restored = KVStore.restore(other.snapshot())
    hub.set_store(restored)
    restored.put(PutRequest(key=b"k"))
    assert [e[3] for e in evs(c.drain())] == [2, 3, 4, 5]
    hub._check()


def test_lease_revoke_is_one_response(store: KVStore, hub: WatchHub) -> None:
    c = Client(hub)
    for k in (b"l/1", b"l/2", b"l/3"):
        put(store, k, lease=9)
    c.create(b"l/", b"l0")
    store.delete_keys(store.keys_for_lease(9))
    resps = [r for r in c.drain() if r.events]
    assert len(resps) == 1
    assert [(e.type, unwrap(e.kv).key) for e in resps[0].events] == [
        (EventEventType.DELETE, k) for k in (b"l/1", b"l/2", b"l/3")
    ]


# ------------------------------------------------------------------ golden bytes
def test_watch_response_bytes(store: KVStore, hub: WatchHub) -> None:
    put(store, b"k", b"1", lease=7)  # 2
    c = Client(hub)
    c.create(b"k", prev_kv=True, watch_id=5)
    created = c.stream.next_responses(1 << 20)
    assert created == [
        bytes(
            WatchResponse(
                header=ResponseHeader(cluster_id=11, member_id=22, revision=2, raft_term=3),
                watch_id=5,
                created=True,
            )
        )
    ]
    put(store, b"k", b"2")  # 3
    delete(store, b"k")  # 4
    got = c.stream.next_responses(1 << 20)
    kv1 = KeyValue(key=b"k", create_revision=2, mod_revision=2, version=1, value=b"1", lease=7)
    kv2 = KeyValue(key=b"k", create_revision=2, mod_revision=3, version=2, value=b"2")
    put_event = Event(kv=kv2, prev_kv=kv1)
    delete_event = Event(
        type=EventEventType.DELETE, kv=KeyValue(key=b"k", mod_revision=4), prev_kv=kv2
    )

    def header_at(rev: int) -> ResponseHeader:
        return ResponseHeader(cluster_id=11, member_id=22, revision=rev, raft_term=3)

    # synced: one response per revision, as it happened
    assert got == [
        bytes(WatchResponse(header=header_at(3), watch_id=5, events=[put_event])),
        bytes(WatchResponse(header=header_at(4), watch_id=5, events=[delete_event])),
    ]
    # catching up from history: the revisions together, at the current revision
    c.create(b"k", prev_kv=True, watch_id=6, start_revision=3)
    assert c.stream.next_responses(1 << 20)[1:] == [
        bytes(WatchResponse(header=header_at(4), watch_id=6, events=[put_event, delete_event]))
    ]
    c.cancel(6)
    c.stream.next_responses(1 << 20)
    c.cancel(5)
    assert c.stream.next_responses(1 << 20) == [
        bytes(
            WatchResponse(
                header=ResponseHeader(cluster_id=11, member_id=22, revision=4, raft_term=3),
                watch_id=5,
                canceled=True,
            )
        )
    ]
