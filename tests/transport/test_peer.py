"""Peer transport tests: two transports in one event loop over real loopback TCP."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest
from support import free_port

from coord.server.raft.types import (
    ConfState,
    Entry,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from coord.server.transport import PeerTransport, discover

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """A PeerHandler that records what the transport reports."""

    def __init__(self) -> None:
        self.msgs: list[Message] = []
        self.unreachable: list[int] = []
        self.snap_status: list[tuple[int, bool]] = []
        self.removed: set[int] = set()
        self.removed_by: list[int] = []
        self.event = anyio.Event()
        self.refuse_snapshots = False
        self.snapshot_times: list[float] = []
        self.release = anyio.Event()

    def on_messages(self, msgs: list[Message]) -> None:
        self.msgs.extend(msgs)
        self.event.set()

    def on_snapshot(self, m: Message) -> bool:
        self.snapshot_times.append(time.monotonic())
        self.on_messages([m])
        return not self.refuse_snapshots

    def on_unreachable(self, peer_id: int) -> None:
        self.unreachable.append(peer_id)

    def on_snapshot_status(self, peer_id: int, failed: bool) -> None:
        self.snap_status.append((peer_id, failed))

    def members_document(self) -> bytes:
        return b"members!"

    def is_removed(self, member_id: int) -> bool:
        return member_id in self.removed

    def on_removed_by_peer(self, peer_id: int) -> None:
        self.removed_by.append(peer_id)

    async def on_call(self, method: str, body: bytes) -> bytes:
        if method == "slow":
            await self.release.wait()
        elif method == "fail":
            raise ValueError("etcdserver: not leader")
        return method.encode() + b":" + body


async def until(pred: Callable[[], object], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not pred():
            await anyio.sleep(0.01)


@asynccontextmanager
async def pair(
    cluster_b: int = 100,
) -> AsyncIterator[tuple[PeerTransport, PeerTransport, Recorder, Recorder]]:
    pa, pb = free_port(), free_port()
    ra, rb = Recorder(), Recorder()
    a = PeerTransport(1, 100, [f"http://127.0.0.1:{pa}"], ra, queue_batches=8)
    b = PeerTransport(2, cluster_b, [f"http://127.0.0.1:{pb}"], rb, queue_batches=8)
    a.set_peers({2: [f"http://127.0.0.1:{pb}"]})
    b.set_peers({1: [f"http://127.0.0.1:{pa}"]})
    async with anyio.create_task_group() as tg:
        await tg.start(a.run)
        await tg.start(b.run)
        yield a, b, ra, rb
        tg.cancel_scope.cancel()


async def test_messages_flow_in_order() -> None:
    async with pair() as (a, _b, _ra, rb):
        await until(lambda: a.is_connected(2))
        for i in range(50):
            a.send(
                [
                    Message(
                        MessageType.APP,
                        to=2,
                        from_=1,
                        term=1,
                        index=i,
                        entries=[Entry(1, i + 1, data=b"x" * 100)],
                    )
                ]
            )
            if i % 4 == 0:
                await anyio.lowlevel.checkpoint()
        await until(lambda: len(rb.msgs) == 50)
        assert [m.index for m in rb.msgs] == list(range(50))
        assert rb.msgs[3].entries[0].data == b"x" * 100


async def test_cluster_id_mismatch_is_rejected() -> None:
    async with pair(cluster_b=999) as (a, _b, ra, rb):
        a.send([Message(MessageType.HEARTBEAT, to=2, from_=1)])
        await until(lambda: 2 in ra.unreachable)
        assert rb.msgs == []
        assert not a.is_connected(2)


async def test_queue_full_drops_and_reports_unreachable() -> None:
    pa = free_port()
    ra = Recorder()
    a = PeerTransport(1, 100, [f"http://127.0.0.1:{pa}"], ra, queue_batches=4)
    a.set_peers({2: [f"http://127.0.0.1:{free_port()}"]})  # nobody listens there
    # not running: nothing drains the queue
    for i in range(10):
        a.send([Message(MessageType.HEARTBEAT, to=2, from_=1, index=i)])
    assert ra.unreachable.count(2) == 6
    a.set_peers({})  # a removed peer's queue is closed (the transport never ran)


async def test_snapshot_on_separate_connection() -> None:
    async with pair() as (a, _b, ra, rb):
        snap = Snapshot(b"s" * 100_000, SnapshotMetadata(ConfState(voters=[1, 2]), 50, 3))
        a.send([Message(MessageType.SNAP, to=2, from_=1, term=3, snapshot=snap)])
        await until(lambda: ra.snap_status == [(2, False)])
        assert rb.msgs[0].snapshot == snap


async def test_refused_snapshot_is_reported_failed_and_retried_with_backoff() -> None:
    """A snapshot the receiver's Raft refuses is a failure for the sender's Raft, and the next
    snapshot to that peer waits (exponential backoff, reset by a success), so a snapshot that
    keeps being refused is not resent in a hot loop (issue 12, bug 2)."""
    async with pair() as (a, _b, ra, rb):
        snap = Snapshot(b"s" * 1000, SnapshotMetadata(ConfState(voters=[1]), 50, 3))
        rb.refuse_snapshots = True
        for n in range(1, 5):  # Raft sends the next MsgSnap once the last one is reported
            a.send([Message(MessageType.SNAP, to=2, from_=1, term=3, snapshot=snap)])

            def reported(n: int = n) -> bool:
                return len(ra.snap_status) == n

            await until(reported)
        assert ra.snap_status == [(2, True)] * 4
        gaps = [t1 - t0 for t0, t1 in zip(rb.snapshot_times, rb.snapshot_times[1:])]
        assert gaps[0] >= 0.09, gaps
        assert gaps[1] >= 0.19, gaps
        assert gaps[2] >= 0.39, gaps
        rb.refuse_snapshots = False
        a.send([Message(MessageType.SNAP, to=2, from_=1, term=3, snapshot=snap)])
        await until(lambda: len(ra.snap_status) == 5)
        assert ra.snap_status[-1] == (2, False)
        t0 = time.monotonic()
        a.send([Message(MessageType.SNAP, to=2, from_=1, term=3, snapshot=snap)])
        await until(lambda: len(ra.snap_status) == 6)
        assert ra.snap_status[-1] == (2, False)
        assert time.monotonic() - t0 < 0.09  # a success resets the backoff


async def test_discover() -> None:
    async with pair() as (a, _b, _ra, _rb):
        doc = await discover([f"http://127.0.0.1:{free_port()}", a.listen_urls[0]], timeout=1)
        assert doc == b"members!"


async def test_reconnects_after_peer_restart() -> None:
    pa, pb = free_port(), free_port()
    ra, rb = Recorder(), Recorder()
    a = PeerTransport(1, 100, [f"http://127.0.0.1:{pa}"], ra, queue_batches=64)
    a.set_peers({2: [f"http://127.0.0.1:{pb}"]})
    async with anyio.create_task_group() as tg:
        await tg.start(a.run)
        for round_ in range(2):  # B goes away (connection reset) and comes back
            b = PeerTransport(2, 100, [f"http://127.0.0.1:{pb}"], rb)
            b.set_peers({1: [f"http://127.0.0.1:{pa}"]})
            async with anyio.create_task_group() as btg:
                await btg.start(b.run)
                await until(lambda: a.is_connected(2))
                a.send([Message(MessageType.HEARTBEAT, to=2, from_=1, index=round_)])

                def heard(r: int = round_) -> bool:
                    return any(m.index == r for m in rb.msgs)

                await until(heard)
                btg.cancel_scope.cancel()
            await until(lambda: not a.is_connected(2))
            a.send([Message(MessageType.HEARTBEAT, to=2, from_=1, index=99)])  # into the void
        tg.cancel_scope.cancel()
    assert 2 in ra.unreachable


async def test_calls_share_one_kept_connection_and_are_multiplexed() -> None:
    """Forwarded calls reuse one connection per peer; a slow call holds up no other."""
    async with pair() as (a, _b, _ra, rb):
        slow_result: list[bytes] = []
        async with anyio.create_task_group() as tg:

            async def slow() -> None:
                slow_result.append(await a.call(2, "slow", b"s", timeout=5))

            tg.start_soon(slow)
            results: list[bytes] = []

            async def echo(i: int) -> None:
                results.append(await a.call(2, "echo", str(i).encode(), timeout=5))

            async with anyio.create_task_group() as fast:
                for i in range(20):
                    fast.start_soon(echo, i)
            assert sorted(results) == sorted(f"echo:{i}".encode() for i in range(20))
            assert slow_result == []  # still waiting, and it did not block the others
            rb.release.set()
        assert slow_result == [b"slow:s"]
        with pytest.raises(OSError, match="not leader"):
            await a.call(2, "fail", b"")
        assert await a.call(2, "echo", b"again") == b"echo:again"
        assert a.call_dials == 1


async def test_call_times_out_and_redials_after_peer_restart() -> None:
    pa, pb = free_port(), free_port()
    ra = Recorder()
    a = PeerTransport(1, 100, [f"http://127.0.0.1:{pa}"], ra)
    a.set_peers({2: [f"http://127.0.0.1:{pb}"]})
    async with anyio.create_task_group() as tg:
        await tg.start(a.run)
        for round_ in range(2):  # B goes away and comes back: the next call dials again
            rb = Recorder()
            b = PeerTransport(2, 100, [f"http://127.0.0.1:{pb}"], rb)
            b.set_peers({1: [f"http://127.0.0.1:{pa}"]})
            async with anyio.create_task_group() as btg:
                await btg.start(b.run)
                assert await a.call(2, "echo", b"x", timeout=5) == b"echo:x"
                with pytest.raises(TimeoutError):
                    await a.call(2, "slow", b"", timeout=0.2)
                btg.cancel_scope.cancel()
            assert a.call_dials == round_ + 1
        with pytest.raises((OSError, TimeoutError)):
            await a.call(2, "echo", b"x", timeout=2)  # B is gone
        tg.cancel_scope.cancel()


async def test_probes_measure_round_trips_and_bytes_are_counted() -> None:
    """The sender probes a raft connection every PROBE_INTERVAL; the acceptor echoes; the
    round trip, the bytes each way, the MsgApps and the drops are counted per peer."""
    async with pair() as (a, b, _ra, rb):
        await until(lambda: a.is_connected(2))
        a.send([Message(MessageType.APP, to=2, from_=1, term=1, index=1)])
        await until(lambda: a.stats()[2].probes_ok >= 2, timeout=10)
        st = a.stats()[2]
        assert st.rtt.count == st.latency.count == st.probes_ok
        assert 0 < st.latency.minimum <= st.latency.mean <= st.latency.maximum < 1
        st.latency._check()
        st.rtt._check()
        assert st.probes_failed == 0
        assert st.appends_sent == 1
        assert st.sent_bytes > 0
        await until(lambda: b.stats()[1].received_bytes >= st.sent_bytes)
        assert b.stats()[1].appends_received == 1
        assert rb.msgs[0].type == MessageType.APP  # the probe frames never reach Raft


async def test_drops_count_as_send_and_heartbeat_failures() -> None:
    ra = Recorder()
    a = PeerTransport(1, 100, [f"http://127.0.0.1:{free_port()}"], ra, queue_batches=2)
    a.set_peers({2: [f"http://127.0.0.1:{free_port()}"]})  # not running: nothing drains
    for i in range(5):
        a.send([Message(MessageType.HEARTBEAT, to=2, from_=1, index=i)])
    a.send([Message(MessageType.APP, to=2, from_=1, index=9)])
    st = a.stats()[2]
    assert (st.sent_failures, st.heartbeat_failures) == (4, 3)
    a.set_peers({})


async def test_an_acceptor_that_does_not_answer_probes_is_not_probed() -> None:
    """A member of an older version accepts with an empty ACCEPT payload and would close a
    connection on an unknown frame type: the sender sends it only MESSAGES frames."""
    from anyio.streams.buffered import BufferedByteReceiveStream

    from coord.server.transport import FrameType, read_frame, write_frame
    from coord.server.transport.peer import PROBE_INTERVAL

    frames: list[FrameType] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def old_member(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            await read_frame(reader)  # HELLO
            await write_frame(stream, FrameType.ACCEPT, b"")
            while True:
                ftype, _ = await read_frame(reader)
                frames.append(ftype)

    ra = Recorder()
    a = PeerTransport(1, 100, [f"http://127.0.0.1:{free_port()}"], ra)
    a.set_peers({2: [f"http://127.0.0.1:{port}"]})
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, old_member)
        await tg.start(a.run)
        await until(lambda: a.is_connected(2))
        for i in range(3):  # over more than two probe intervals
            a.send([Message(MessageType.HEARTBEAT, to=2, from_=1, index=i)])
            await anyio.sleep(PROBE_INTERVAL)
        await until(lambda: len(frames) == 3)
        assert frames == [FrameType.MESSAGES] * 3
        assert a.is_connected(2)
        assert a.stats()[2].probes_ok == a.stats()[2].probes_failed == 0
        tg.cancel_scope.cancel()


async def test_a_probe_waiting_behind_a_blocked_send_is_not_failed_early() -> None:
    """A peer that stops reading fills the socket: the pump's send blocks, and the probe it was
    asked for waits behind it. That probe is failed after PROBE_TIMEOUT, not at the next probe
    interval (it was counted as failed after one second)."""
    from anyio.streams.buffered import BufferedByteReceiveStream

    from coord.server.transport import FrameType, read_frame, write_frame
    from coord.server.transport.frames import PROBES
    from coord.server.transport.peer import PROBE_INTERVAL, PROBE_TIMEOUT

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    stalled = anyio.Event()

    async def stalled_member(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await read_frame(BufferedByteReceiveStream(stream))  # HELLO
            await write_frame(stream, FrameType.ACCEPT, PROBES)
            stalled.set()
            await anyio.sleep(math.inf)  # reads nothing more

    ra = Recorder()
    a = PeerTransport(1, 100, [f"http://127.0.0.1:{free_port()}"], ra)
    a.set_peers({2: [f"http://127.0.0.1:{port}"]})
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, stalled_member)
        await tg.start(a.run)
        await until(lambda: a.is_connected(2))
        await stalled.wait()
        big = [Entry(1, i + 1, data=b"x" * (1 << 20)) for i in range(4)]
        for i in range(16):  # 64 MiB: more than the socket buffers hold
            a.send([Message(MessageType.APP, to=2, from_=1, term=1, index=i, entries=big)])
        start = time.monotonic()
        while time.monotonic() - start < min(PROBE_TIMEOUT - 1, 3 * PROBE_INTERVAL):
            await anyio.sleep(PROBE_INTERVAL / 4)
            assert a.stats()[2].probes_failed == 0
        await until(lambda: a.stats()[2].probes_failed == 1, timeout=PROBE_TIMEOUT + 2)
        tg.cancel_scope.cancel()
