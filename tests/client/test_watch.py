"""Watches: events, history replay, filters, prev_kv, progress, cancel, compaction."""

from __future__ import annotations

import threading
import time

import pytest

from coord import AsyncClient, Client, CompactedError, Delete, EventType


def test_watch_key_events(client: Client, prefix: str) -> None:
    k = prefix + "k"
    with client.watch(k) as w:
        r1 = client.put(k, "1")
        client.put(prefix + "other", "x")
        r2 = client.put(k, "2")
        r3 = client.txn(success=[Delete(k)]).revision
        it = iter(w)
        e1, e2, e3 = next(it), next(it), next(it)
    assert (e1.type, e1.key, e1.value, e1.revision) == (EventType.PUT, k.encode(), b"1", r1)
    assert (e2.type, e2.value, e2.kv.version, e2.revision) == (EventType.PUT, b"2", 2, r2)
    assert e3.type == EventType.DELETE
    assert e3.kv.value == b""
    assert e3.kv.version == 0
    assert e3.revision == r3
    assert w.revision == r3


def test_watch_prefix_history_prev_kv_and_filters(client: Client, prefix: str) -> None:
    start = client.put(prefix + "a", "1")
    client.put(prefix + "a", "2")
    client.delete(prefix + "a")
    with client.watch(prefix, prefix=True, start_revision=start, prev_kv=True) as w:
        it = iter(w)
        evs = [next(it) for _ in range(3)]
    assert [e.type for e in evs] == [EventType.PUT, EventType.PUT, EventType.DELETE]
    assert evs[0].prev_kv is None
    assert evs[1].prev_kv is not None
    assert evs[1].prev_kv.value == b"1"
    assert evs[2].prev_kv is not None
    assert evs[2].prev_kv.value == b"2"
    with client.watch(prefix, prefix=True, start_revision=start, no_put=True) as w:
        e = next(iter(w))
    assert e.type == EventType.DELETE
    with client.watch(prefix, prefix=True, start_revision=start, no_delete=True) as w:
        it = iter(w)
        assert [next(it).value, next(it).value] == [b"1", b"2"]


def test_watch_batches_keep_revisions_whole(client: Client, prefix: str) -> None:
    from coord import Put

    with client.watch(prefix, prefix=True) as w:
        ok, _ = client.txn(success=[Put(prefix + "x", "1"), Put(prefix + "y", "1")])
        assert ok
        resp = w.next_response(timeout=10)
    assert resp is not None
    assert not resp.progress
    assert [e.key[-1:] for e in resp.events] == [b"x", b"y"]
    assert resp.events[0].revision == resp.events[1].revision == resp.revision


def test_many_watches_share_one_stream(client: Client, prefix: str) -> None:
    watches = [client.watch(f"{prefix}{i}") for i in range(20)]
    for i in range(20):
        client.put(f"{prefix}{i}", str(i))
    for i, w in enumerate(watches):
        assert next(iter(w)).value == str(i).encode()
        w.close()
    assert client.async_client._watch_mux.streams_opened == 1


def test_close_from_another_thread_ends_iteration(client: Client, prefix: str) -> None:
    w = client.watch(prefix, prefix=True)
    got: list[object] = []

    def consume() -> None:
        got.extend(w)  # blocks until closed
        got.append("done")

    t = threading.Thread(target=consume)
    t.start()
    client.put(prefix + "a", "1")
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    w.close()
    t.join(10)
    assert not t.is_alive()
    assert got[-1] == "done"
    assert len(got) == 2


def test_compacted_start_revision_raises(client: Client, prefix: str) -> None:
    r1 = client.put(prefix + "a", "1")
    r2 = client.put(prefix + "a", "2")
    client.compact(r2)
    w = client.watch(prefix + "a", start_revision=r1)
    with pytest.raises(CompactedError) as exc:
        next(iter(w))
    assert exc.value.compact_revision == r2
    assert list(w) == []  # ended


def test_request_progress(client: Client, prefix: str) -> None:
    with client.watch(prefix + "p") as w:
        rev = client.put(prefix + "q", "1")
        client.request_progress()
        resp = w.next_response(timeout=10)
    assert resp is not None
    assert resp.progress
    assert resp.events == ()
    assert resp.revision >= rev


@pytest.mark.anyio
async def test_async_watch(aclient: AsyncClient, prefix: str) -> None:
    async with aclient.watch(prefix, prefix=True) as w:
        await aclient.put(prefix + "a", "1")
        await aclient.put(prefix + "b", "2")
        seen = []
        async for ev in w:
            seen.append(ev.value)
            if len(seen) == 2:
                break
    assert seen == [b"1", b"2"]
    w2 = await aclient.watch(prefix + "z")
    await aclient.put(prefix + "z", "3")
    async for batch in w2.responses():
        assert [e.value for e in batch.events] == [b"3"]
        w2.cancel()
    assert w2.closed


@pytest.mark.anyio
async def test_cancel_sends_cancel_request(aclient: AsyncClient, prefix: str) -> None:
    w = await aclient.watch(prefix + "a")
    assert w.watch_id is not None
    mux = aclient._watch_mux
    w.cancel()
    assert w.watch_id not in mux._by_id
    # the stream stays usable for new watches after the cancel
    async with aclient.watch(prefix + "b") as w2:
        await aclient.put(prefix + "b", "1")
        assert (await w2.__anext__()).value == b"1"
    assert mux.streams_opened == 1


def test_watch_prefix_helper_and_range(client: Client, prefix: str) -> None:
    with client.watch_prefix(prefix + "p/") as w, client.watch(prefix + "a", prefix + "c") as r:
        client.put(prefix + "b", "in-range")
        client.put(prefix + "c", "outside")
        client.put(prefix + "p/x", "prefixed")
        assert next(iter(w)).value == b"prefixed"
        assert next(iter(r)).value == b"in-range"
        resp = r.next_response(timeout=0.3)
        assert resp is None  # "c" is outside [a, c)
