"""The blocking Client's two ways of running a unary call (see coord/client.py).

A unary call runs on its calling thread, over a pooled blocking HTTP/2 connection of its own
(the direct lane); beyond ``LANES`` concurrent calls they go to the loop thread. Both must
give the same results, survive interruption, notice a silent peer, and never send a write on
a connection the server already closed (which would make its outcome look ambiguous).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType

import pytest
from support import Relay, wait_for
from unwrap import unwrap

from coord import Client
from coord._conn import SyncConnection
from coord.client import LANES
from coord.errors import ConnectionFailedError, RequestTimeoutError


@pytest.fixture
def relay(backend: str) -> Iterator[Relay]:
    r = Relay(backend)
    yield r
    r.close()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts TCP connections (kernel backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"127.0.0.1:{s.getsockname()[1]}"


class Interrupted(BaseException):
    """What the test's SIGALRM handler raises, standing in for Ctrl-C's KeyboardInterrupt."""


@pytest.fixture
def interrupt_after() -> Iterator[Callable[[float], None]]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def lanes_taken(client: Client) -> Iterator[None]:
    """As if ``LANES`` other threads were in unary calls right now."""
    for _ in range(LANES):
        assert client._lanes.acquire(blocking=False)
    try:
        yield
    finally:
        for _ in range(LANES):
            client._lanes.release()


def _lanes_free(client: Client) -> bool:
    return client._lanes._value == LANES


def _idle(client: Client) -> int:
    """Idle pooled connections of the calling-thread transport."""
    calls = client._lane_client._calls
    assert isinstance(calls, SyncConnection)
    return sum(map(len, calls._idle.values()))


def _loop_tasks(client: Client) -> list[str]:
    """Names of the coroutines still running on the client's loop thread (ours only)."""

    def names() -> list[str]:
        qualnames: list[str] = [
            getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks()
        ]
        return [q for q in qualnames if "AsyncClient" in q]

    running: list[str] = client.call(names)
    return running


def test_lone_caller_does_not_use_the_loop_thread(client: Client, prefix: str) -> None:
    rev = client.put(prefix + "a", "1")
    assert unwrap(client.get(prefix + "a")).value == b"1"
    assert client.txn(success=[]).revision >= rev
    assert _idle(client) == 1, "the calls did not share one calling-thread connection"
    assert not client.async_client._conn._channels, "a lone caller's call hopped threads"


def test_busy_lanes_send_callers_to_the_loop_thread(client: Client, prefix: str) -> None:
    with lanes_taken(client):
        rev = client.put(prefix + "b", "1")
        assert unwrap(client.get(prefix + "b")).mod_revision == rev
    assert client.async_client._conn._channels
    assert unwrap(client.get(prefix + "b")).value == b"1"


def test_caller_inside_an_event_loop_is_served(client: Client, prefix: str) -> None:
    async def inside() -> bytes:
        client.put(prefix + "c", "in-loop")  # blocks this loop, but must work
        kv = client.get(prefix + "c")
        assert kv is not None
        return kv.value

    assert asyncio.run(inside()) == b"in-loop"


@pytest.mark.parametrize("lane", ["free", "held"])
def test_many_threads_get_their_own_results(client: Client, prefix: str, lane: str) -> None:
    def work(i: int) -> tuple[int, bytes, int]:
        rev = client.put(f"{prefix}k{i}", f"v{i}")
        kv = client.get(f"{prefix}k{i}")
        assert kv is not None
        return rev, kv.value, kv.mod_revision

    with contextlib.ExitStack() as stack:
        if lane == "held":  # every call goes through the loop thread's inbox concurrently
            stack.enter_context(lanes_taken(client))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(200)))
    for i, (rev, value, mod) in enumerate(results):
        assert value == f"v{i}".encode()
        assert mod == rev
    assert len({rev for rev, _, _ in results}) == 200
    assert len(client.get_prefix(prefix)) == 200


def test_write_after_the_server_closed_an_idle_connection(relay: Relay, prefix: str) -> None:
    with Client(relay.endpoint, timeout=10) as c:
        c.put(prefix + "k", "1")
        assert relay.accepted == 1
        relay.drop()  # e.g. a server restart or idle timeout while nobody runs the lane's loop
        wait_for(lambda: relay.open_connections == 0, what="relay connections closed")
        # Sent on the dead connection, this put would fail as "outcome unknown"; the idle
        # connection's close is read first and a new one made, so it is sent once, and succeeds.
        rev = c.put(prefix + "k", "2")
        assert relay.accepted == 2
        kv = c.get(prefix + "k")
        assert kv is not None
        assert kv.value == b"2"
        assert kv.mod_revision == rev


def test_interrupted_lane_call_leaves_the_client_usable(
    black_hole: str, interrupt_after: Callable[[float], None]
) -> None:
    with Client(black_hole, timeout=2) as c:
        arm = interrupt_after
        arm(0.3)
        with pytest.raises(Interrupted):
            c.get("/k")  # this thread is blocked in recv on its own connection
        assert _lanes_free(c)
        assert _idle(c) == 0  # the interrupted connection was closed, not pooled
        with pytest.raises(RequestTimeoutError):
            c.get("/k")  # the client still works: this call runs to its deadline
        assert _lanes_free(c)
        assert not c.async_client._conn._channels  # both calls ran on the calling thread


def test_interrupted_hop_is_cancelled_on_the_loop(
    black_hole: str, interrupt_after: Callable[[float], None]
) -> None:
    with Client(black_hole, timeout=30) as c:
        arm = interrupt_after
        with lanes_taken(c):  # force the loop-thread path
            arm(0.3)
            with pytest.raises(Interrupted):
                c.get("/k")
        wait_for(lambda: _loop_tasks(c) == [], what="hopped call cancelled")


def test_silent_peer_is_noticed_without_a_deadline(black_hole: str) -> None:
    """No timeout: the server's HTTP/2 SETTINGS must still arrive within connect_timeout.
    Nothing is written before they do, so a write fails like a read: surely not sent."""
    with Client(black_hole, timeout=None, keepalive=0.2, connect_timeout=0.3) as c:
        with pytest.raises(ConnectionFailedError, match="did not send its HTTP/2 SETTINGS"):
            c.get("/k")
        with pytest.raises(ConnectionFailedError, match=r"within 0\.3 s"):
            c.put("/k", "v")


def test_close_from_inside_an_event_loop(backend: str, prefix: str) -> None:
    c = Client(backend, timeout=10)
    c.put(prefix + "x", "1")
    assert _idle(c) == 1

    async def close_it() -> None:
        c.close()

    asyncio.run(close_it())
    assert _idle(c) == 0
    with pytest.raises(ConnectionFailedError):
        c.get(prefix + "x")
