"""The retry rule: reads retry on another endpoint, writes never after an ambiguous failure.

A small TCP proxy sits in front of the server. When armed, it forwards the client's next
request and then cuts both connections as soon as the server's reply (a HEADERS or DATA frame
on a stream) arrives: the request *was*
applied but the client never sees the reply, the ambiguous case. The rule is checked for both
transports: ``AsyncClient`` (grpclib) and the blocking ``Client`` (coord/_h2.py, its calls
run in a worker thread so that the proxy on the test's loop keeps running).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from unwrap import unwrap

from coord import AsyncClient, Client, UnavailableError

_DATA, _HEADERS = 0x0, 0x1  # HTTP/2 frame types (RFC 9113 §6)


class CuttingProxy:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.armed = False
        self.cuts = 0
        self.frozen = False  # when set, nothing is forwarded and nothing is closed
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(*self.upstream)
        self._writers |= {cw, uw}
        sent_after_arm = asyncio.Event()

        async def up() -> None:
            while data := await cr.read(65536):
                if self.frozen:
                    continue
                uw.write(data)
                if self.armed:
                    sent_after_arm.set()
            uw.close()

        async def down() -> None:
            # Read the server's side frame by frame: only a HEADERS or DATA frame on a stream
            # is the reply. A SETTINGS ack, PING ack or WINDOW_UPDATE can arrive before the
            # server has handled the request; cutting on one of those made the write not
            # happen at all, and the test failed now and then against etcd.
            buf = b""
            while data := await ur.read(65536):
                if self.frozen:
                    continue
                buf += data
                while len(buf) >= 9:
                    size = int.from_bytes(buf[:3], "big") + 9
                    if len(buf) < size:
                        break
                    frame, buf = buf[:size], buf[size:]
                    kind, stream = frame[3], int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
                    if (
                        self.armed
                        and sent_after_arm.is_set()
                        and stream != 0
                        and kind in (_DATA, _HEADERS)
                    ):
                        self.armed = False
                        self.cuts += 1
                        cw.transport.abort()
                        uw.transport.abort()
                        return
                    cw.write(frame)
            cw.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(up(), down())


@pytest.fixture
async def proxy(backend: str) -> AsyncIterator[CuttingProxy]:
    p = CuttingProxy(backend)
    await p.start()
    yield p
    await p.close()


class _Threaded:
    """A blocking Client behind awaitable methods: each call runs in a worker thread."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def current_endpoint(self) -> str:
        return self.client.current_endpoint

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


Opener = Callable[..., contextlib.AbstractAsyncContextManager[Any]]


@pytest.fixture(params=["AsyncClient", "Client"])
def open_client(request: pytest.FixtureRequest) -> Opener:
    @contextlib.asynccontextmanager
    async def open_(endpoints: list[str], **options: Any) -> AsyncIterator[Any]:
        if request.param == "AsyncClient":
            async with AsyncClient(endpoints, **options) as c:
                yield c
            return
        blocking = await asyncio.to_thread(Client, endpoints, **options)
        try:
            yield _Threaded(blocking)
        finally:
            await asyncio.to_thread(blocking.close)

    return open_


@pytest.mark.anyio
async def test_ambiguous_write_raises_and_is_not_retried(
    proxy: CuttingProxy, backend: str, prefix: str, open_client: Opener
) -> None:
    via = f"127.0.0.1:{unwrap(proxy._server).sockets[0].getsockname()[1]}"
    async with open_client([via, backend], timeout=10) as c:
        await c.get(prefix + "warm")  # connection established through the proxy
        proxy.armed = True
        with pytest.raises(UnavailableError, match="outcome is unknown"):
            await c.put(prefix + "k", "v")
        assert proxy.cuts == 1
        kv = await c.get(prefix + "k")  # now on the direct endpoint
        assert kv is not None
        assert kv.version == 1  # applied exactly once: the client did not re-send it
        assert c.current_endpoint == backend


@pytest.mark.anyio
async def test_read_is_retried_on_next_endpoint(
    proxy: CuttingProxy, backend: str, prefix: str, open_client: Opener
) -> None:
    via = f"127.0.0.1:{unwrap(proxy._server).sockets[0].getsockname()[1]}"
    async with open_client([via, backend], timeout=10) as c:
        await c.put(prefix + "k", "v")
        proxy.armed = True
        kv = await c.get(prefix + "k")
        assert kv is not None
        assert kv.value == b"v"
        assert proxy.cuts == 1
        assert c.current_endpoint == backend


@pytest.mark.anyio
async def test_refused_connection_write_moves_on(
    backend: str, prefix: str, open_client: Opener
) -> None:
    from support import free_port

    dead = f"127.0.0.1:{free_port()}"
    async with open_client([dead, backend], timeout=10) as c:
        rev = await c.put(prefix + "k", "v")  # never reached a server: safe to send elsewhere
        assert rev > 0
        assert c.current_endpoint == backend


@pytest.mark.anyio
async def test_silent_peer_is_detected_by_keepalive(
    proxy: CuttingProxy, backend: str, prefix: str
) -> None:
    """A frozen connection (no RST, no data: a partition) is noticed by HTTP/2 pings and the
    watch resumes on the next endpoint without losing the event written meanwhile."""
    via = f"127.0.0.1:{unwrap(proxy._server).sockets[0].getsockname()[1]}"
    async with (
        AsyncClient([via, backend], timeout=10, keepalive=5) as c,
        AsyncClient(backend) as writer,
    ):
        async with c.watch(prefix + "k") as w:
            proxy.frozen = True
            rev = await writer.put(prefix + "k", "while-frozen")
            ev = await asyncio.wait_for(w.__anext__(), 30)
        assert (ev.value, ev.revision) == (b"while-frozen", rev)
        assert c.current_endpoint == backend
        assert c._watch_mux.streams_opened == 2
