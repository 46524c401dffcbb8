"""Stuck endpoints cost about ``connect_timeout`` (2 s), not the call's whole ``timeout``.

A stuck endpoint accepts TCP connections and then never answers: here a plain listening
socket that accepts and never reads or writes, and a real coord-server paused with SIGSTOP
(what a hung server looks like). Placed first in the endpoint list before a healthy server
(``backend``: coord-server, then a real etcd), the first call and every later call succeed
within ~3 s; alone, a call raises ``ConnectionFailedError`` within ~3 s. A server that
freezes in the middle of a client's life is also left within ~3 s by the next call, a write
included when the connection sat idle before it (the client PINGs an idle connection before
writing on it, so the write surely was not sent to the frozen server and may be re-sent).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import CoordProc

from coord import AsyncClient, Client, ConnectionFailedError

#: What a stuck endpoint may cost a call (connect_timeout = 2 s, plus scheduling slack).
BUDGET = 3.0


class SilentServer:
    """A real TCP endpoint that accepts connections and never reads or writes."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._sock.close()
        self._thread.join(5)
        for c in self.accepted:
            c.close()


def freeze(proc: CoordProc) -> None:
    """SIGSTOP the server: it keeps its sockets (the kernel still accepts) but never runs."""
    os.killpg(proc.pid, signal.SIGSTOP)


def thaw_and_stop(proc: CoordProc) -> None:
    os.killpg(proc.pid, signal.SIGCONT)
    proc.stop()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    s = SilentServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def paused_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordProc]:
    """A coord-server frozen with SIGSTOP (tests that need it running again SIGCONT it)."""
    proc = CoordProc(tmp_path_factory.mktemp("paused"), name="paused")
    freeze(proc)
    yield proc
    thaw_and_stop(proc)


@pytest.fixture(params=["socket", "sigstop"])
def stuck(request: pytest.FixtureRequest) -> str:
    """Endpoint of a stuck server: a silent socket, then a SIGSTOPped coord-server."""
    if request.param == "socket":
        return str(request.getfixturevalue("silent").endpoint)
    return str(request.getfixturevalue("paused_server").endpoint)


def timed(fn: Callable[..., object], *args: object, **kw: object) -> tuple[object, float]:
    t0 = time.monotonic()
    out = fn(*args, **kw)
    return out, time.monotonic() - t0


def test_sync_stuck_first_endpoint_fails_over_fast(stuck: str, backend: str, prefix: str) -> None:
    with Client([stuck, backend], timeout=20) as c:
        rev, took = timed(c.put, prefix + "k", "v")
        assert took < BUDGET, f"first put took {took:.1f} s"
        assert isinstance(rev, int)
        for i in range(3):
            kv, took = timed(c.get, prefix + "k")
            assert took < BUDGET, f"get {i} took {took:.1f} s"
            assert kv is not None
            _, took = timed(c.put, prefix + "k", str(i))
            assert took < BUDGET, f"put {i} took {took:.1f} s"
        assert c.current_endpoint == backend


@pytest.mark.anyio
async def test_async_stuck_first_endpoint_fails_over_fast(
    stuck: str, backend: str, prefix: str
) -> None:
    async with AsyncClient([stuck, backend], timeout=20) as c:
        t0 = time.monotonic()
        first = await c.put(prefix + "k", "v")
        assert time.monotonic() - t0 < BUDGET
        for i in range(3):
            t0 = time.monotonic()
            assert await c.get(prefix + "k") is not None
            assert time.monotonic() - t0 < BUDGET
            t0 = time.monotonic()
            await c.put(prefix + "k", str(i))
            assert time.monotonic() - t0 < BUDGET
        assert c.current_endpoint == backend
        # streams open on the healthy endpoint too
        watch = await c.watch(prefix + "k", start_revision=first)
        assert (await watch.__anext__()).value == b"v"
        watch.cancel()


def test_sync_only_stuck_endpoint_raises_fast(stuck: str, prefix: str) -> None:
    with Client([stuck], timeout=20) as c:
        t0 = time.monotonic()
        with pytest.raises(ConnectionFailedError, match=stuck):
            c.get(prefix + "k")
        assert time.monotonic() - t0 < BUDGET
        t0 = time.monotonic()
        with pytest.raises(ConnectionFailedError, match=r"2\.0 s"):
            c.put(prefix + "k", "v")
        assert time.monotonic() - t0 < BUDGET


@pytest.mark.anyio
async def test_async_only_stuck_endpoint_raises_fast(stuck: str, prefix: str) -> None:
    async with AsyncClient([stuck], timeout=20) as c:
        t0 = time.monotonic()
        with pytest.raises(ConnectionFailedError, match=stuck):
            await c.put(prefix + "k", "v")
        assert time.monotonic() - t0 < BUDGET


def test_connect_timeout_is_configurable(silent: SilentServer, prefix: str) -> None:
    with Client([silent.endpoint], timeout=20, connect_timeout=0.5) as c:
        t0 = time.monotonic()
        with pytest.raises(ConnectionFailedError, match=r"0\.5 s"):
            c.get(prefix + "k")
        assert time.monotonic() - t0 < 1.5


@pytest.fixture
def freezable(tmp_path: Path) -> Iterator[CoordProc]:
    proc = CoordProc(tmp_path, name="freezable")
    yield proc
    thaw_and_stop(proc)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_server_frozen_mid_life_is_left_fast(
    kind: str, freezable: CoordProc, backend: str, prefix: str
) -> None:
    """The endpoint in use freezes: a read right after, and a write after an idle moment,
    each fail over within ~3 s; so does every later call."""
    import asyncio

    async def run_async() -> None:
        async with AsyncClient([freezable.endpoint, backend], timeout=20) as c:
            await c.put(prefix + "k", "v")
            assert c.current_endpoint == freezable.endpoint
            freeze(freezable)
            t0 = time.monotonic()
            assert await c.get(prefix + "k") is None  # the healthy server never saw the put
            assert time.monotonic() - t0 < BUDGET
            assert c.current_endpoint == backend
            t0 = time.monotonic()
            await c.put(prefix + "k", "w")
            assert time.monotonic() - t0 < BUDGET

    if kind == "async":
        asyncio.run(run_async())
        return
    with Client([freezable.endpoint, backend], timeout=20) as c:
        c.put(prefix + "k", "v")
        assert c.current_endpoint == freezable.endpoint
        freeze(freezable)
        kv, took = timed(c.get, prefix + "k")
        assert took < BUDGET, f"read after the freeze took {took:.1f} s"
        assert kv is None  # answered by the healthy server, which never saw the put
        assert c.current_endpoint == backend
        _, took = timed(c.put, prefix + "k", "w")
        assert took < BUDGET


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_write_on_idle_connection_to_frozen_server_fails_over(
    kind: str, freezable: CoordProc, backend: str, prefix: str
) -> None:
    """A write after the connection sat idle is preceded by a PING: the frozen server gets
    no request, so the write is re-sent to the healthy endpoint instead of raising
    'outcome unknown'."""
    import asyncio

    from coord._liveness import PROBE_IDLE

    async def run_async() -> None:
        async with AsyncClient([freezable.endpoint, backend], timeout=20) as c:
            await c.put(prefix + "k", "v")
            freeze(freezable)
            await asyncio.sleep(PROBE_IDLE + 0.1)  # the stimulus: an idle connection
            t0 = time.monotonic()
            rev = await c.put(prefix + "k", "w")
            assert time.monotonic() - t0 < BUDGET
            assert rev > 0

    if kind == "async":
        asyncio.run(run_async())
        return
    with Client([freezable.endpoint, backend], timeout=20) as c:
        c.put(prefix + "k", "v")
        freeze(freezable)
        time.sleep(PROBE_IDLE + 0.1)  # the stimulus: an idle connection
        rev, took = timed(c.put, prefix + "k", "w")
        assert took < BUDGET, f"write took {took:.1f} s"
        assert isinstance(rev, int)
        assert c.current_endpoint == backend


def test_watch_and_lease_skip_a_stuck_first_endpoint(stuck: str, backend: str, prefix: str) -> None:
    """Streams (watch, lease keep-alive) opened first also leave the stuck endpoint within
    ~connect_timeout, and work on the healthy one."""
    with Client([stuck, backend], timeout=20) as c:
        t0 = time.monotonic()
        watch = c.watch(prefix + "k")
        assert time.monotonic() - t0 < BUDGET, "watch creation"
        with watch, c.lease(5) as lease:
            rev = c.put(prefix + "k", "v", lease=lease)
            event = next(watch)
            assert (event.revision, event.value) == (rev, b"v")
            assert lease.ttl() > 0
            assert lease.alive
