"""KV and Txn through the sync and async clients, against coord-server and a real etcd."""

from __future__ import annotations

import pytest
from unwrap import unwrap

from coord import (
    AsyncClient,
    Client,
    CompactedError,
    CreateRevision,
    Delete,
    DuplicateKeyError,
    EmptyKeyError,
    FutureRevisionError,
    Get,
    KeyValue,
    LeaseId,
    ModRevision,
    Put,
    TooManyOpsError,
    Txn,
    Value,
    Version,
)


def test_put_get_roundtrip(client: Client, prefix: str) -> None:
    rev = client.put(prefix + "a", "1")
    kv = client.get(prefix + "a")
    assert kv == KeyValue((prefix + "a").encode(), b"1", rev, rev, 1, 0)
    assert kv.key_str == prefix + "a"
    assert kv.value_str == "1"
    rev2 = client.put(prefix + "a", b"\x00\xff")
    assert rev2 == rev + 1
    kv2 = client.get(prefix + "a")
    assert kv2 is not None
    assert (kv2.value, kv2.create_revision, kv2.mod_revision, kv2.version) == (
        b"\x00\xff",
        rev,
        rev2,
        2,
    )
    assert client.get(prefix + "missing") is None


def test_put_prev_kv_and_get_at_revision(client: Client, prefix: str) -> None:
    k = prefix + "k"
    rev1, prev = client.put(k, "v1", prev_kv=True)
    assert prev is None
    rev2, prev = client.put(k, "v2", prev_kv=True)
    assert prev is not None
    assert prev.value == b"v1"
    assert prev.mod_revision == rev1
    old = client.get(k, revision=rev1)
    assert old is not None
    assert old.value == b"v1"
    assert unwrap(client.get(k, revision=rev2)).value == b"v2"
    with pytest.raises(FutureRevisionError):
        client.get(k, revision=rev2 + 1000)


def test_get_prefix_sorted_and_delete(client: Client, prefix: str) -> None:
    for name in ["c", "a", "b", "a/x"]:
        client.put(prefix + name, name)
    client.put(prefix[:-1] + "0", "outside")  # sorts right after the prefix: not included
    kvs = client.get_prefix(prefix)
    assert [kv.key for kv in kvs] == [(prefix + n).encode() for n in ["a", "a/x", "b", "c"]]
    assert client.delete(prefix + "a") == 1
    assert client.delete(prefix + "a") == 0
    prevs = client.delete(prefix + "b", prev_kv=True)
    assert [kv.value for kv in prevs] == [b"b"]
    assert client.delete_prefix(prefix) == 2
    assert client.get_prefix(prefix) == []
    assert client.get(prefix[:-1] + "0") is not None
    client.delete(prefix[:-1] + "0")


def test_range_options(client: Client, prefix: str) -> None:
    revs = [client.put(prefix + n, n * 3) for n in "dcba"]
    res = client.range(prefix, prefix=True, limit=2)
    assert [kv.key[-1:] for kv in res.kvs] == [b"a", b"b"]
    assert res.more
    assert res.count == 4
    assert res.revision >= revs[-1]
    res = client.range(prefix, prefix=True, sort="-create", limit=1)
    assert res.kvs[0].key.endswith(b"a")
    res = client.range(prefix, prefix=True, sort="create")
    assert [kv.key[-1:] for kv in res.kvs] == [b"d", b"c", b"b", b"a"]
    res = client.range(prefix, prefix=True, keys_only=True)
    assert all(kv.value == b"" for kv in res.kvs)
    assert len(res.kvs) == 4
    res = client.range(prefix, prefix=True, count_only=True)
    assert res.kvs == []
    assert res.count == 4
    res = client.range(prefix + "a", prefix + "c")
    assert [kv.key[-1:] for kv in res.kvs] == [b"a", b"b"]
    res = client.range(prefix, prefix=True, max_create_revision=revs[1])
    assert [kv.key[-1:] for kv in res.kvs] == [b"c", b"d"]
    res = client.range(prefix, prefix=True, serializable=True)
    assert len(res.kvs) == 4
    with pytest.raises(ValueError, match="unknown sort"):
        client.range(prefix, prefix=True, sort="size")


def test_txn_compare_and_ops(client: Client, prefix: str) -> None:
    k = prefix + "k"
    rev = client.put(k, "v")
    ok, results = client.txn(
        compare=[
            Value(k) == "v",
            Version(k) > 0,
            CreateRevision(k) == rev,
            ModRevision(k) < rev + 1,
            LeaseId(k) == 0,
            Value(k) != "w",
        ],
        success=[
            Put(k, "w", prev_kv=True),
            Get(k),
            Delete(prefix + "none"),
            Put(prefix + "n", "1"),
        ],
        failure=[Get(k)],
    )
    assert ok is True
    prev, got, deleted, new_prev = results
    assert isinstance(prev, KeyValue)
    assert prev.value == b"v"
    assert [kv.value for kv in got] == [b"w"]  # a Get after a Put in one txn sees the put
    assert deleted == 0
    assert new_prev is None
    res = client.txn(compare=[Value(k) == "v"], success=[Put(k, "x")], failure=[Get(k)])
    assert res.succeeded is False
    got_w = res.results[0]
    assert isinstance(got_w, list)
    assert got_w[0].value == b"w"
    assert res.revision >= rev + 1
    # absent key: version 0, create 0; value compares false
    missing = prefix + "missing"
    ok, _ = client.txn(compare=[Version(missing) == 0, CreateRevision(missing) == 0])
    assert ok
    ok, _ = client.txn(compare=[Value(missing) != "anything"])
    assert not ok


def test_txn_nested_and_prefix_compare(client: Client, prefix: str) -> None:
    client.put(prefix + "a", "x")
    client.put(prefix + "b", "x")
    ok, results = client.txn(
        compare=[Value(prefix, prefix=True) == "x"],
        success=[
            Txn(
                compare=[Version(prefix + "a") == 5],
                success=[Put(prefix + "c", "1")],
                failure=[Get(prefix, prefix=True), Delete(prefix + "b", prev_kv=True)],
            )
        ],
    )
    assert ok
    inner_ok, inner = results[0]
    assert inner_ok is False
    assert [kv.key[-1:] for kv in inner[0]] == [b"a", b"b"]
    assert [kv.key[-1:] for kv in inner[1]] == [b"b"]


def test_errors_are_typed(client: Client, prefix: str) -> None:
    with pytest.raises(EmptyKeyError) as exc:
        client.put("", "v")
    assert exc.value.message == "etcdserver: key is not provided"
    with pytest.raises(DuplicateKeyError):
        client.txn(success=[Put(prefix + "d", "1"), Put(prefix + "d", "2")])
    with pytest.raises(TooManyOpsError):
        client.txn(success=[Put(prefix + str(i), "v") for i in range(129)])
    with pytest.raises(TypeError):
        client.txn(compare=[True])  # type: ignore[list-item]


def test_compact(client: Client, prefix: str) -> None:
    k = prefix + "c"
    r1 = client.put(k, "1")
    r2 = client.put(k, "2")
    client.compact(r2)
    with pytest.raises(CompactedError):
        client.get(k, revision=r1)
    assert unwrap(client.get(k, revision=r2)).value == b"2"
    with pytest.raises(CompactedError):
        client.compact(r1)


def test_status_members_hash(client: Client, prefix: str) -> None:
    st = client.status()
    assert st.leader != 0
    assert st.raft_term >= 1
    assert st.version
    members = client.members()
    assert len(members) == 1
    assert st.member_id == members[0].id
    assert members[0].client_urls
    rev = client.put(prefix + "h", "1")
    client.put(prefix + "h", "2")
    h = client.hash_kv(rev)
    assert h.revision >= rev
    assert client.hash_kv(rev).hash == h.hash


@pytest.mark.anyio
async def test_async_kv(aclient: AsyncClient, prefix: str) -> None:
    rev = await aclient.put(prefix + "a", "1")
    kv = await aclient.get(prefix + "a")
    assert kv is not None
    assert kv.mod_revision == rev
    assert [k.value for k in await aclient.get_prefix(prefix)] == [b"1"]
    ok, results = await aclient.txn(
        compare=[Value(prefix + "a") == "1"], success=[Delete(prefix + "a", prev_kv=True)]
    )
    assert ok
    assert results[0][0].value == b"1"
    assert await aclient.get(prefix + "a") is None


def test_client_concurrent_threads(client: Client, prefix: str) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        revs = list(pool.map(lambda i: client.put(f"{prefix}{i:03}", str(i)), range(64)))
    assert len(set(revs)) == 64
    assert len(client.get_prefix(prefix)) == 64


def test_range_helpers_and_delete_range(client: Client, prefix: str) -> None:
    for n in "abcd":
        client.put(prefix + n, n)
    assert client.delete_range(prefix + "b", prefix + "d") == 2
    assert [kv.key[-1:] for kv in client.get_prefix(prefix)] == [b"a", b"d"]
    prevs = client.delete_range(prefix + "a", prefix + "b", prev_kv=True)
    assert isinstance(prevs, list)
    assert [kv.value for kv in prevs] == [b"a"]
    everything = client.get_all(keys_only=True)
    assert (prefix + "d").encode() in {kv.key for kv in everything}
    assert client.delete_prefix(prefix, prev_kv=True)[0].value == b"d"


def test_str_bytes_and_binary_keys(client: Client, prefix: str) -> None:
    key = prefix.encode() + b"\x00\xff\x01"
    client.put(key, bytearray(b"\x00bin"))
    kv = client.get(key)
    assert kv is not None
    assert (kv.key, kv.value) == (key, b"\x00bin")
    assert client.get_prefix(prefix.encode() + b"\x00")[0].key == key
    client.put(prefix + "ü", "ö")
    assert unwrap(client.get(prefix + "ü")).value_str == "ö"
    with pytest.raises(TypeError):
        client.put(prefix + "x", 5)  # type: ignore[call-overload]


def test_large_values_and_the_request_size_limit(client: Client, prefix: str) -> None:
    """Values far larger than HTTP/2's initial flow-control windows (64 KiB) go through both
    ways; a request over the server's limit (1.5 MiB by default, as etcd) is a typed error,
    and the connection stays usable."""
    from coord import RequestTooLargeError

    values = [bytes([i]) * 1_000_000 for i in range(3)]
    revs = [client.put(f"{prefix}big{i}", v) for i, v in enumerate(values)]
    assert [kv.value for kv in client.get_prefix(prefix + "big")] == values
    assert [kv.mod_revision for kv in client.get_prefix(prefix + "big")] == revs
    with pytest.raises(RequestTooLargeError):
        client.put(prefix + "huge", b"x" * 2_000_000)
    assert client.get(prefix + "huge") is None
    assert unwrap(client.get(prefix + "big0")).value == values[0]
