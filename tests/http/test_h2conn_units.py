"""coord's server-side HTTP/2 (server/http/h2conn.py and friends) driven in-process.

A real ``h2`` client connection is the peer; its bytes are fed straight into a
:class:`GrpcConnection` over a recording transport, and the server's bytes back into h2, so a
test controls every frame and every event-loop turn. The randomized test mixes calls, resets,
window updates, SETTINGS changes and PINGs and checks the connection's invariants
(``_check()``) after every step, and that every call h2 saw finish got the right answer.
The black-box tests against a running server are in test_h2_server.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import pytest
from grpclib.const import Cardinality, Handler
from grpclib.server import Server

from coord.server.api.rawcodec import RawCodec
from coord.server.grpclib_compat import h2_stream
from coord.server.http.grpcserver import GrpcServer
from coord.server.http.h2conn import GrpcConnection
from coord.server.http.hpackcache import MAX_BLOCKS, CachingDecoder

ECHO = "/toy.Toy/Echo"
BIG = "/toy.Toy/Big"
CHAT = "/toy.Toy/Chat"
BIG_SIZE = 200_000


def _grpc(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


class _Toy:
    async def echo(self, stream: Any) -> None:
        await stream.send_message(await stream.recv_message())

    async def big(self, stream: Any) -> None:
        request = await stream.recv_message()
        await stream.send_message(request * (BIG_SIZE // max(1, len(request))))

    async def chat(self, stream: Any) -> None:
        async for message in stream:
            await stream.send_message(message)

    def __mapping__(self) -> dict[str, Handler]:
        def h(func: Callable[[Any], Awaitable[None]], kind: Cardinality) -> Handler:
            return Handler(func, kind, bytes, bytes)

        return {
            ECHO: h(self.echo, Cardinality.UNARY_UNARY),
            BIG: h(self.big, Cardinality.UNARY_UNARY),
            CHAT: h(self.chat, Cardinality.STREAM_STREAM),
        }


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


class _Pair:
    """An h2 client wired to a GrpcConnection; :meth:`pump` moves bytes both ways."""

    def __init__(self) -> None:
        self.grpc = GrpcServer(Server([_Toy()], codec=RawCodec()))
        self.conn: GrpcConnection = self.grpc.protocol()
        self.transport = _Transport()
        self.conn.connection_made(self.transport)
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.client.initiate_connection()
        self.events: list[Any] = []

    async def pump(self, turns: int = 6) -> None:
        for _ in range(turns):
            data = self.client.data_to_send()
            if data:
                self.conn.data_received(data)
            await asyncio.sleep(0)
            if self.transport.out:
                out, self.transport.out = bytes(self.transport.out), bytearray()
                self.events += self.client.receive_data(out)
            self.conn._check()

    def open(self, path: str, *extra: tuple[str, str]) -> int:
        sid: int = self.client.get_next_available_stream_id()
        self.client.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "x"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *extra,
            ],
        )
        return sid


def _responses(events: list[Any]) -> tuple[dict[int, bytes], dict[int, str], set[int]]:
    """Per stream: the DATA received, the grpc-status of its trailers, and the reset ones."""
    data: dict[int, bytes] = {}
    status: dict[int, str] = {}
    reset = set()
    for e in events:
        if isinstance(e, h2.events.DataReceived):
            data[e.stream_id] = data.get(e.stream_id, b"") + e.data
        elif isinstance(e, h2.events.TrailersReceived | h2.events.ResponseReceived):
            for k, v in cast(list[tuple[str, str]], e.headers):  # header_encoding="utf-8"
                if k == "grpc-status":
                    status[e.stream_id] = v
        elif isinstance(e, h2.events.StreamReset):
            reset.add(e.stream_id)
    return data, status, reset


def _give_back(client: h2.connection.H2Connection, events: list[Any]) -> None:
    """Acknowledge the DATA received so far (h2 then sends WINDOW_UPDATEs)."""
    for e in events:
        if isinstance(e, h2.events.DataReceived) and e.flow_controlled_length:
            client.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            e.flow_controlled_length = 0


@pytest.mark.parametrize("seed", range(12))
def test_random_calls_resets_and_window_changes_keep_the_invariants(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> None:
        pair = _Pair()
        c = pair.client
        await pair.pump()
        expect: dict[int, bytes] = {}  # stream -> the reply it must get
        cancelled: set[int] = set()
        chats: list[int] = []
        for _ in range(60):
            action = rng.choice(["echo", "big", "chat", "rst", "window", "settings", "ping"])
            if action == "echo":
                sid = pair.open(ECHO)
                msg = rng.randbytes(rng.randint(0, 3000))
                c.send_data(sid, _grpc(msg), end_stream=True)
                expect[sid] = _grpc(msg)
            elif action == "big":
                sid = pair.open(BIG)
                c.send_data(sid, _grpc(b"ab"), end_stream=True)
                expect[sid] = _grpc(b"ab" * (BIG_SIZE // 2))
            elif action == "chat":
                sid = pair.open(CHAT)
                c.send_data(sid, _grpc(b"hi"))
                chats.append(sid)
            elif action == "rst" and (chats or expect):
                sid = rng.choice(chats or sorted(expect))
                if c.streams.get(sid) is not None and not c.streams[sid].closed:
                    c.reset_stream(sid)
                    cancelled.add(sid)
                    if sid in chats:
                        chats.remove(sid)
            elif action == "window":
                for sid in list(expect):
                    if c.streams.get(sid) is not None and not c.streams[sid].closed:
                        c.increment_flow_control_window(rng.randint(1, 70_000), stream_id=sid)
                c.increment_flow_control_window(rng.randint(1, 200_000))
            elif action == "settings":
                window = rng.choice([0, 1, 100, 16384, 65535, 1 << 20])
                c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            else:
                c.ping(rng.randbytes(8))
            await pair.pump(rng.randint(1, 4))
            _give_back(c, pair.events)  # as a real client does
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        for sid in chats:
            c.end_stream(sid)
        for _ in range(40):  # let everything finish, giving back all windows
            _give_back(c, pair.events)
            await pair.pump(2)
        data, status, _ = _responses(pair.events)
        for sid, reply in expect.items():
            if sid in cancelled:
                continue
            assert status.get(sid) == "0", (sid, status.get(sid))
            assert data.get(sid) == reply
        for sid in chats:
            assert status.get(sid) == "0"
            assert data.get(sid) == _grpc(b"hi")
        assert not pair.conn._streams  # every stream finished or reset
        pair.grpc.close()
        await pair.grpc.wait_closed()

    asyncio.run(main())


def test_reply_waits_for_the_window_and_its_trailers_wait_behind_it() -> None:
    async def main() -> None:
        pair = _Pair()
        c = pair.client
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
        await pair.pump()
        sid = pair.open(BIG)
        c.send_data(sid, _grpc(b"ab"), end_stream=True)
        await pair.pump()
        data, status, _ = _responses(pair.events)
        assert len(data[sid]) == 1000  # exactly the window, then it waits
        assert sid not in status  # no trailers past held-back bytes
        assert sid in pair.conn._blocked
        c.increment_flow_control_window(BIG_SIZE, stream_id=sid)
        await pair.pump()
        data, status, _ = _responses(pair.events)
        assert len(data[sid]) == 65535  # now the connection window holds it back
        assert sid not in status
        c.increment_flow_control_window(BIG_SIZE)
        await pair.pump()
        data, status, _ = _responses(pair.events)
        assert data[sid] == _grpc(b"ab" * (BIG_SIZE // 2))
        assert status[sid] == "0"
        assert not pair.conn._streams

    asyncio.run(main())


def test_deadline_inside_a_held_back_reply_resets_the_stream() -> None:
    """The message cannot be completed: no trailers after half a message, RST_STREAM(CANCEL)."""

    async def main() -> None:
        pair = _Pair()
        c = pair.client
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
        await pair.pump()
        sid = pair.open(BIG, ("grpc-timeout", "50m"))
        c.send_data(sid, _grpc(b"ab"), end_stream=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while sid not in _responses(pair.events)[2]:
            assert loop.time() < deadline, "no reset within 5 s"
            await asyncio.sleep(0.01)
            await pair.pump(1)
        data, status, _ = _responses(pair.events)
        assert len(data[sid]) == 1000
        assert sid not in status
        (reset,) = [e for e in pair.events if isinstance(e, h2.events.StreamReset)]
        assert reset.error_code == h2.errors.ErrorCodes.CANCEL
        assert not pair.conn._streams

    asyncio.run(main())


def test_request_larger_than_the_stream_window_is_read() -> None:
    async def main() -> None:
        pair = _Pair()
        c = pair.client
        c.increment_flow_control_window(1 << 22)
        await pair.pump()
        sid = pair.open(ECHO)
        msg = random.Random(1).randbytes(1_000_000)  # 4x the stream window
        frame = _grpc(msg)
        sent = 0
        for _ in range(500):
            n = min(len(frame) - sent, c.local_flow_control_window(sid), c.max_outbound_frame_size)
            if n:
                c.send_data(sid, frame[sent : sent + n], end_stream=sent + n == len(frame))
                sent += n
            await pair.pump(2)
            if sent == len(frame):
                break
        assert sent == len(frame)  # the server kept giving the window back
        for _ in range(100):  # the echo comes back as the client gives back its window
            _give_back(c, pair.events)
            await pair.pump(2)
        data, status, _ = _responses(pair.events)
        assert status[sid] == "0"
        assert data[sid] == frame

    asyncio.run(main())


# ----------------------------------------------------------------------------- hpack cache


def test_cached_block_follows_the_dynamic_table() -> None:
    """b"\\xbe" names the newest dynamic entry: its meaning changes with each insertion."""
    enc = hpack.Encoder()
    dec = CachingDecoder()
    dec.decode(enc.encode([("x-a", "1")]))  # inserted: index 62
    assert dec.decode(b"\xbe") == [("x-a", "1")]
    assert dec.decode(b"\xbe") == [("x-a", "1")]  # from the cache
    dec.decode(enc.encode([("x-b", "2")]))  # a new entry 62
    assert dec.decode(b"\xbe") == [("x-b", "2")]
    assert dec.decode(b"\xbf") == [("x-a", "1")]
    dec.decode(b"\x20")  # size update to 0: the table is emptied
    with pytest.raises(hpack.HPACKError):
        dec.decode(b"\xbe")


def test_cache_agrees_with_hpack_on_random_header_streams() -> None:
    rng = random.Random(7)
    enc = hpack.Encoder()
    plain, cached = hpack.Decoder(), CachingDecoder()
    names = ["grpc-timeout", "token", "x-trace", "user-agent", ":path"]
    for _ in range(3 * MAX_BLOCKS):
        headers = [(n, str(rng.randint(0, 5))) for n in rng.sample(names, rng.randint(1, 4))]
        if rng.random() < 0.05:
            enc.header_table_size = rng.choice([0, 256, 4096])
        block = enc.encode(headers)
        got = cached.decode(block)
        assert got == headers
        assert got == [(str(n), str(v)) for n, v in plain.decode(block)]


def test_h2_stream_of_a_call_reads_the_request_bytes() -> None:
    seen: list[bytes] = []

    class Frames(_Toy):
        async def echo(self, stream: Any) -> None:
            frames = h2_stream(stream)
            seen.extend([await frames.recv_data(5), await frames.recv_data(3)])
            await stream.send_message(b"ok")

    async def main() -> None:
        pair = _Pair()
        pair.grpc = GrpcServer(Server([Frames()], codec=RawCodec()))
        pair.conn = pair.grpc.protocol()
        pair.conn.connection_made(pair.transport)
        sid = pair.open(ECHO)
        pair.client.send_data(sid, _grpc(b"abc"), end_stream=True)
        await pair.pump()
        data, status, _ = _responses(pair.events)
        assert status[sid] == "0"
        assert data[sid] == _grpc(b"ok")

    asyncio.run(main())
    assert seen == [_grpc(b"abc")[:5], b"abc"]


def test_send_listeners_see_every_reply() -> None:
    """With a SendMessage listener the replies go through grpclib's dispatch, one by one."""
    from grpclib.events import SendMessage, listen

    seen: list[bytes] = []

    async def on_send(event: SendMessage) -> None:
        seen.append(event.message)

    async def main() -> None:
        pair = _Pair()
        server = Server([_Toy()], codec=RawCodec())
        listen(server, SendMessage, on_send)
        pair.grpc = GrpcServer(server)
        pair.conn = pair.grpc.protocol()
        pair.conn.connection_made(pair.transport)
        await pair.pump()
        sid = pair.open(CHAT)
        pair.client.send_data(sid, _grpc(b"one") + _grpc(b"two"), end_stream=True)
        await pair.pump()
        data, status, _ = _responses(pair.events)
        assert status[sid] == "0"
        assert data[sid] == _grpc(b"one") + _grpc(b"two")

    asyncio.run(main())
    assert seen == [b"one", b"two"]
