"""Randomized WatchHub test: interleave writes, creates, cancels, partial drains, compactions
and progress requests over several streams; check invariants after every step and, at the end,
that each watcher saw exactly the matching history (ordered, unique, whole revisions)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

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
from coord._pb.mvccpb import EventEventType
from coord.server.mvcc import KVStore
from coord.server.watch import WatchHub

KEYS = [b"a", b"b", b"ba", b"c", b"d"]
Change = tuple[str, bytes, bytes | None]  # type, key, prev value (None = absent)


def header(rev: int) -> bytes:
    return bytes(ResponseHeader(revision=rev))


@dataclass
class Watch:
    key: bytes
    end: bytes
    start: int  # resolved start revision
    no_put: bool
    no_delete: bool
    prev_kv: bool
    events: list[tuple[int, str, bytes, bytes | None]] = field(default_factory=list)
    responses: list[WatchResponse] = field(default_factory=list)
    canceled: bool = False
    compact_revision: int = 0
    floor: int = 0  # revision of the last stream progress response seen while it existed

    def wants(self, kind: str, k: bytes) -> bool:
        if not self.end:
            ok = k == self.key
        elif self.end == b"\x00":
            ok = k >= self.key
        else:
            ok = self.key <= k < self.end
        return ok and not (self.no_put if kind == "P" else self.no_delete)


class Stream:
    def __init__(self, hub: WatchHub) -> None:
        self.s = hub.open_stream(lambda: None)
        self.watches: dict[int, Watch] = {}
        self.pending_creates: list[Watch] = []
        self.closed_ids: set[int] = set()


def run(seed: int, steps: int) -> None:
    rnd = random.Random(seed)
    store = KVStore()
    # a small queue bound makes synced watchers fall back to history now and then
    hub = WatchHub(store, header, fragment_bytes=400, queue_bytes=rnd.choice([1, 600, 1 << 20]))
    history: dict[int, list[Change]] = {}
    values: dict[bytes, bytes] = {}

    def record(rev: int) -> None:
        out: list[Change] = []
        for v in store.changes(rev):
            kind = "D" if v.version == 0 else "P"
            out.append((kind, v.key, values.get(v.key)))
            if kind == "D":
                values.pop(v.key, None)
            else:
                values[v.key] = v.value
        history[rev] = out

    store.add_listener(record)
    streams = [Stream(hub) for _ in range(3)]

    def drain(st: Stream, budget: int) -> None:
        for raw in st.s.next_responses(budget):
            r = WatchResponse.parse(raw)
            if r.watch_id == -1 and not r.created:
                # stream-wide progress: every watcher is past it
                for w in st.watches.values():
                    if not w.canceled and w.events:
                        assert w.events[-1][0] <= unwrap(r.header).revision
                    # watchers that exist now get no event <= this revision any more
                    w.floor = unwrap(r.header).revision
                continue
            if r.created:
                w = st.pending_creates.pop(0)
                if r.canceled:
                    continue
                assert r.watch_id not in st.watches or st.watches[r.watch_id].canceled
                st.watches[r.watch_id] = w
                continue
            w = st.watches[r.watch_id]
            assert not w.canceled, "response after cancel"
            w.responses.append(r)
            if r.canceled:
                w.canceled = True
                w.compact_revision = r.compact_revision
                continue
            for e in r.events:
                kind = "D" if e.type == EventEventType.DELETE else "P"
                prev = e.prev_kv.value if e.prev_kv is not None else None
                rev = unwrap(e.kv).mod_revision
                assert rev > w.floor
                w.events.append((rev, kind, unwrap(e.kv).key, prev))

    for _ in range(steps):
        op = rnd.random()
        if op < 0.35:
            k = rnd.choice(KEYS)
            if rnd.random() < 0.7:
                store.put(PutRequest(key=k, value=b"%d" % rnd.randrange(100)))
            else:
                store.delete_range(DeleteRangeRequest(key=k, range_end=rnd.choice([b"", b"c"])))
        elif op < 0.42:
            ks = rnd.sample(KEYS, 3)
            value = b"t" * rnd.choice([60, 200])  # 3 x 200 bytes: fragments past 400
            ops = [RequestOp(request_put=PutRequest(key=k, value=value)) for k in ks]
            store.txn(TxnRequest(success=ops))
        elif op < 0.55:
            st = rnd.choice(streams)
            key = rnd.choice(KEYS)
            end = rnd.choice([b"", b"", b"\x00", b"c", b"z"])
            start = rnd.choice([0, 0, 1, max(1, store.rev - 3), store.rev + 2])
            filters = [f for f in (0, 1) if rnd.random() < 0.15]
            c = WatchCreateRequest(
                key=key,
                range_end=end,
                start_revision=start,
                filters=[WatchCreateRequestFilterType(f) for f in filters],
                prev_kv=rnd.random() < 0.5,
                fragment=rnd.random() < 0.3,
            )
            st.pending_creates.append(
                Watch(key, end, start or store.rev + 1, 0 in filters, 1 in filters, c.prev_kv)
            )
            st.s.handle_request(WatchRequest(create_request=c))
        elif op < 0.6:
            st = rnd.choice(streams)
            if st.watches:
                wid = rnd.choice(list(st.watches))
                w = st.watches[wid]
                st.s.handle_request(WatchRequest(cancel_request=WatchCancelRequest(watch_id=wid)))
                drain(st, 1 << 20)  # the cancel response arrives; later nothing
                if not w.canceled:
                    assert w.responses
                    assert w.responses[-1].canceled
                del st.watches[wid]
        elif op < 0.65:
            st = rnd.choice(streams)
            st.s.handle_request(WatchRequest(progress_request=WatchProgressRequest()))
        elif op < 0.68 and store.rev > store.compact_rev + 1:
            store.compact(rnd.randint(store.compact_rev + 1, store.rev))
        else:
            drain(rnd.choice(streams), rnd.choice([100, 300, 2000]))
        hub._check()
        store._check()

    for st in streams:
        drain(st, 1 << 30)
        assert st.s.next_responses(1 << 30) == []
        for w in st.watches.values():
            check_watch(w, history, store)
        st.s._check()


def check_watch(w: Watch, history: dict[int, list[Change]], store: KVStore) -> None:
    expected = []
    for rev in range(w.start, store.rev + 1):
        for kind, k, prev in history.get(rev, []):
            if w.wants(kind, k):
                is_create = kind == "P" and prev is None
                expected.append((rev, kind, k, prev if w.prev_kv and not is_create else None))
    got = w.events
    if w.canceled:
        assert w.compact_revision > 0
        # everything delivered before the cancel is a prefix of the expected history
        expected = expected[: len(got)]
    # prev_kv may be omitted when its revision was compacted at send time
    norm_got = [(r, kd, k, p) for (r, kd, k, p) in got]
    assert [e[:3] for e in norm_got] == [e[:3] for e in expected]
    for g, e in zip(norm_got, expected):
        assert g[3] == e[3] or g[3] is None, (g, e)
    # whole revisions per response (or fragments that end with fragment=False)
    frag_open = False
    seen_revs: set[int] = set()
    for r in w.responses:
        revs = [unwrap(e.kv).mod_revision for e in r.events]
        if not frag_open:
            for rev in set(revs):
                assert rev not in seen_revs, "a revision split across responses"
        seen_revs.update(revs)
        frag_open = r.fragment


@pytest.mark.parametrize("seed", range(int(os.environ.get("COORD_HUB_SEEDS", "6"))))
def test_random_interleavings(seed: int) -> None:
    run(seed, 400)
