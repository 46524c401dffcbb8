"""One stream's own teardown must not disturb the other streams and calls of the client.

The keep-alive stream closes when the last lease ends; that local close must neither break the
shared connection (which carries the Watch stream and unary calls) nor count as a failover.
"""

from __future__ import annotations

import asyncio

import pytest
from grpclib.exceptions import ProtocolError

from coord import AsyncClient
from coord._pb import etcdserverpb as pb
from coord.lease import KEEPALIVE_PATH


@pytest.mark.anyio
async def test_keepalive_teardown_keeps_watch_and_calls(aclient: AsyncClient, prefix: str) -> None:
    keeper = aclient._keepaliver
    mux = aclient._watch_mux
    async with aclient.watch(prefix + "k") as w:
        channel = aclient._conn.channel()[1]
        for i in range(4):
            lease = await aclient.lease(5)  # a fresh grant after each teardown succeeds
            await aclient.put(prefix + "held", "v", lease=lease)
            await lease.revoke()  # the last lease: the keep-alive loop ends its stream
            deadline = asyncio.get_running_loop().time() + 10
            while not keeper.idle:
                assert asyncio.get_running_loop().time() < deadline, "keeper never idle"
                await asyncio.sleep(0.01)
            await aclient.put(prefix + "k", str(i))
            ev = await asyncio.wait_for(w.__anext__(), 10)
            assert ev.kv.value == str(i).encode()
            assert aclient._conn.channel()[1] is channel, "the shared channel was replaced"
            assert channel._connected
            assert mux.streams_opened == 1, "the watch stream had to be re-opened"
    assert keeper.streams_opened == 4


@pytest.mark.anyio
async def test_stream_closed_under_us_keeps_channel(aclient: AsyncClient) -> None:
    """A stream whose HTTP/2 stream is already closed when the body exits (reset meanwhile)
    is torn down quietly: no ProtocolError, no rotation, the channel stays."""
    conn = aclient._conn
    assert await aclient.get("warm-up") is None
    index, channel = conn.channel()
    async with conn.open_stream(KEEPALIVE_PATH, pb.LeaseKeepAliveResponse.parse) as (_, s):
        s._stream.reset_nowait()  # as if the stream had been reset before our teardown
    assert conn.current == index
    assert conn.channel()[1] is channel
    assert channel._connected
    assert await aclient.get("after") is None


@pytest.mark.anyio
async def test_local_protocol_error_does_not_rotate(aclient: AsyncClient) -> None:
    """A grpclib ProtocolError is a local misuse of one stream, not a connection failure."""
    conn = aclient._conn
    assert await aclient.get("warm-up") is None
    index, channel = conn.channel()
    with pytest.raises(ProtocolError):
        async with conn.open_stream(KEEPALIVE_PATH, pb.LeaseKeepAliveResponse.parse):
            raise ProtocolError("Outgoing stream was not ended")
    assert conn.current == index
    assert conn.channel()[1] is channel
    assert await aclient.get("after") is None


@pytest.mark.anyio
async def test_normal_exit_ends_the_stream(aclient: AsyncClient) -> None:
    conn = aclient._conn
    async with conn.open_stream(KEEPALIVE_PATH, pb.LeaseKeepAliveResponse.parse) as (_, s):
        pass
    assert s._end_done
    assert s._cancel_done
