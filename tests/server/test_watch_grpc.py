"""Watch over real gRPC: etcdctl watch (coord and etcd), lease-expiry DELETE events, and a
slow watcher that must not hold back other watchers or writers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality
from support import CoordProc, Proc, close_channel, etcdctl, free_port, require_binary, wait_for
from unwrap import unwrap

from coord._pb import etcdserverpb as pb
from coord._pb import mvccpb
from coord.server.api.rawcodec import RawCodec

pytestmark = pytest.mark.etcdctl


class Watcher:
    """``etcdctl watch ...`` running in the background; output polled, never slept on."""

    def __init__(self, endpoint: str, log: Path, *args: str) -> None:
        self.proc = Proc(
            [require_binary("etcdctl"), f"--endpoints={endpoint}", "watch", *args],
            log,
            env={"ETCDCTL_API": "3"},
        )

    def wait_output(self, expected: str, timeout: float = 15) -> None:
        wait_for(
            lambda: self.proc.output() == expected,
            timeout=timeout,
            what=f"watch output {expected!r} (have {self.proc.output()!r})",
        )

    def stop(self) -> None:
        self.proc.kill()
        self.proc.stop()


@pytest.fixture
def watchers(tmp_path: Path) -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    yield started
    for w in started:
        w.stop()


def start(watchers: list[Watcher], tmp_path: Path, endpoint: str, *args: str) -> Watcher:
    w = Watcher(endpoint, tmp_path / f"watch{len(watchers)}.log", *args)
    watchers.append(w)
    return w


def wait_watching(endpoint: str, key: str, w: Watcher) -> None:
    """Put a marker until the watcher prints it (the watch is then surely established)."""

    def seen() -> bool:
        etcdctl(endpoint, "put", key, "marker")
        return "marker" in w.proc.output()

    wait_for(seen, timeout=15, what="watch established", interval=0.2)


def test_watch_prefix_and_prev_kv(
    backend: str, prefix: str, tmp_path: Path, watchers: list[Watcher]
) -> None:
    w = start(watchers, tmp_path, backend, "--prefix", prefix, "--prev-kv")
    wait_watching(backend, prefix + "m", w)
    base = w.proc.output()
    etcdctl(backend, "put", prefix + "a", "1")
    etcdctl(backend, "put", prefix + "a", "2")
    etcdctl(backend, "put", prefix.rstrip("/") + "-outside", "x")
    etcdctl(backend, "del", prefix + "a")
    p = prefix
    w.wait_output(base + f"PUT\n{p}a\n1\nPUT\n{p}a\n1\n{p}a\n2\nDELETE\n{p}a\n2\n{p}a\n\n")


def test_watch_from_history(
    backend: str, prefix: str, tmp_path: Path, watchers: list[Watcher]
) -> None:
    etcdctl(backend, "put", prefix + "h", "1")
    out = etcdctl(backend, "get", prefix + "h", "-w", "json").stdout
    rev = int(out.split('"mod_revision":')[1].split(",")[0])
    etcdctl(backend, "put", prefix + "h", "2")
    etcdctl(backend, "del", prefix + "h")
    w = start(watchers, tmp_path, backend, "--rev", str(rev), prefix + "h")
    w.wait_output(f"PUT\n{prefix}h\n1\nPUT\n{prefix}h\n2\nDELETE\n{prefix}h\n\n")


@pytest.fixture(scope="module")
def lease_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordProc]:
    peer = f"http://127.0.0.1:{free_port()}"
    proc = CoordProc(
        tmp_path_factory.mktemp("watchlease"),
        args=[
            "--election-timeout",
            "500",
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
        ],
    )
    yield proc
    proc.stop()


def test_lease_expiry_delete_events(
    lease_server: CoordProc, tmp_path: Path, watchers: list[Watcher]
) -> None:
    ep = lease_server.endpoint
    w = start(watchers, tmp_path, ep, "--prefix", "/lw/")
    wait_watching(ep, "/lw/m", w)
    base = w.proc.output()
    lease = etcdctl(ep, "lease", "grant", "1").stdout.split()[1]
    etcdctl(ep, "put", "--lease", lease, "/lw/a", "1")
    etcdctl(ep, "put", "--lease", lease, "/lw/b", "2")
    w.wait_output(base + "PUT\n/lw/a\n1\nPUT\n/lw/b\n2\nDELETE\n/lw/a\n\nDELETE\n/lw/b\n\n")


# -- slow watcher over real gRPC ---------------------------------------------------------------
def _create(key: bytes, end: bytes) -> bytes:
    return bytes(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=end)))


async def _events(stream: Any, want: int, timeout: float) -> list[mvccpb.Event]:
    got: list[mvccpb.Event] = []
    async with asyncio.timeout(timeout):
        while len(got) < want:
            resp = pb.WatchResponse.parse(unwrap(await stream.recv_message()))
            got.extend(resp.events)
    return got


def test_slow_watcher_does_not_block_others(coord_server: Any, prefix: str) -> None:
    host, port = coord_server.endpoint.rsplit(":", 1)
    key, end = prefix.encode(), prefix.encode()[:-1] + b"0"
    n, size = 48, 200_000  # ~9.6 MB of events: far beyond the slow stream's windows

    async def main() -> None:
        slow_ch = Channel(host, int(port), codec=RawCodec())
        fast_ch = Channel(host, int(port), codec=RawCodec())
        kv_ch = Channel(host, int(port), codec=RawCodec())
        path = "/etcdserverpb.Watch/Watch"
        try:
            async with (
                slow_ch.request(path, Cardinality.STREAM_STREAM, bytes, bytes) as slow,
                fast_ch.request(path, Cardinality.STREAM_STREAM, bytes, bytes) as fast,
            ):
                for s in (slow, fast):
                    await s.send_message(_create(key, end))
                    assert pb.WatchResponse.parse(unwrap(await s.recv_message())).created
                fast_reader = asyncio.create_task(_events(fast, n, 60))
                for i in range(n):
                    async with kv_ch.request(
                        "/etcdserverpb.KV/Put", Cardinality.UNARY_UNARY, bytes, bytes, timeout=10
                    ) as put:
                        req = pb.PutRequest(key=key + b"%03d" % i, value=b"x" * size)
                        await put.send_message(bytes(req), end=True)
                        await put.recv_message()
                fast_events = await fast_reader
                expected = [key + b"%03d" % i for i in range(n)]
                assert [unwrap(e.kv).key for e in fast_events] == expected
                # the slow watcher was never read so far: it catches up, in order, complete
                slow_events = await _events(slow, n, 60)
                assert [unwrap(e.kv).key for e in slow_events] == expected
                assert all(len(unwrap(e.kv).value) == size for e in slow_events)
                await slow.cancel()
                await fast.cancel()
        finally:
            for ch in (slow_ch, fast_ch, kv_ch):
                await close_channel(ch)

    asyncio.run(main())
    etcdctl(coord_server.endpoint, "del", "--prefix", prefix)


def test_half_closed_watch_stream_keeps_delivering(coord_server: Any, prefix: str) -> None:
    host, port = coord_server.endpoint.rsplit(":", 1)
    key = prefix.encode() + b"hc"

    async def main() -> list[mvccpb.Event]:
        ch = Channel(host, int(port), codec=RawCodec())
        try:
            async with ch.request(
                "/etcdserverpb.Watch/Watch", Cardinality.STREAM_STREAM, bytes, bytes
            ) as stream:
                await stream.send_message(_create(key, b""), end=True)  # then half-close
                assert pb.WatchResponse.parse(unwrap(await stream.recv_message())).created
                etcd_put = asyncio.to_thread(
                    etcdctl, coord_server.endpoint, "put", key.decode(), "after-half-close"
                )
                await etcd_put
                events = await _events(stream, 1, 15)
                await stream.cancel()
                return events
        finally:
            await close_channel(ch)

    events = asyncio.run(main())
    assert [(unwrap(e.kv).key, unwrap(e.kv).value) for e in events] == [(key, b"after-half-close")]
