"""The blocking Client's HTTP/2 transport (coord/_h2.py) against a scripted peer.

etcd and coord-server rarely pad frames, split trailers into CONTINUATION frames, refuse
streams, shrink flow-control windows or answer before reading a whole request, so a peer
built on the h2 library (server side, on loopback) does these on cue. Each test checks both
what the caller sees and what reached the peer (how often a write was sent).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from support import wait_for

from coord import Client
from coord._conn import SyncConnection
from coord._pb import etcdserverpb as pb
from coord.errors import (
    ConnectionFailedError,
    InvalidArgumentError,
    RequestTooLargeError,
    UnavailableError,
)

Conn = h2.connection.H2Connection


class Peer:
    """A gRPC server on loopback whose every reply is scripted by ``handler``.

    ``handler(peer, conn, stream_id, message)`` runs when a request has fully arrived;
    ``on_headers(peer, conn, stream_id)`` (optional) when its headers have. ``requests`` lists
    every complete request (path, message); ``connections`` counts accepted connections.
    """

    def __init__(
        self,
        handler: Callable[[Peer, Conn, int, bytes], None],
        *,
        on_headers: Callable[[Peer, Conn, int], None] | None = None,
        settings: dict[int, int] | None = None,
        ack_data: bool = True,
    ) -> None:
        self.handler, self.on_headers = handler, on_headers
        self.settings, self.ack_data = settings or {}, ack_data
        self.requests: list[tuple[str, bytes]] = []
        self.connections = 0
        self.hang_up = False  # set by a handler: close the connection after this round
        self.raw = b""  # set by a handler: bytes to write before h2's own
        self.reset = False  # a flag for handlers
        self.cancelled: list[int] = []  # streams the client reset
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._socks.append(sock)
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        conn = Conn(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        if self.settings:
            conn.update_settings(self.settings)
        paths: dict[int, str] = {}
        bodies: dict[int, bytes] = {}
        with sock:
            sock.sendall(conn.data_to_send())
            while not self.hang_up:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        sid = ev.stream_id
                        # str, not bytes: the connection decodes headers (header_encoding)
                        headers = cast("list[tuple[str, str]]", ev.headers)
                        paths[sid] = dict(headers)[":path"]
                        bodies[sid] = b""
                        if self.on_headers is not None:
                            self.on_headers(self, conn, sid)
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] += ev.data
                        if self.ack_data:
                            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset) and ev.remote_reset:
                        self.cancelled.append(ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        message = bodies[ev.stream_id][5:]
                        self.requests.append((paths[ev.stream_id], message))
                        self.handler(self, conn, ev.stream_id, message)
                try:
                    sock.sendall(self.raw + conn.data_to_send())
                except OSError:
                    return
                self.raw = b""
            self.hang_up = False

    def close(self) -> None:
        for s in [self._listener, *self._socks]:  # shutdown wakes threads blocked on them
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(timeout=5)


def reply(
    conn: Conn,
    sid: int,
    message: bytes = b"",
    *,
    status: int = 0,
    text: str | None = None,
    pad: int | None = None,
) -> None:
    """A gRPC reply: headers, one message (padded if asked), trailers."""
    conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    if status == 0:
        conn.send_data(sid, b"\x00" + len(message).to_bytes(4, "big") + message, pad_length=pad)
    trailers = [("grpc-status", str(status))]
    if text is not None:
        trailers.append(("grpc-message", text))
    conn.send_headers(sid, trailers, end_stream=True)


def put_reply(revision: int) -> bytes:
    return bytes(pb.PutResponse(header=pb.ResponseHeader(revision=revision)))


def write_once_read_thrice(
    peer: Peer, write_error: tuple[type[Exception], str], read_error: tuple[type[Exception], str]
) -> None:
    """A put fails at once, sent once; a get is tried 3 times (the retry rule), then fails."""
    with Client(peer.endpoint, timeout=5) as c:
        with pytest.raises(write_error[0], match=write_error[1]):
            c.put("/k", "v")
        assert len(peer.requests) == 1
        with pytest.raises(read_error[0], match=read_error[1]):
            c.get("/k")
        assert len(peer.requests) == 4


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(handler: Callable[[Peer, Conn, int, bytes], None], **options: Any) -> Peer:
        made.append(Peer(handler, **options))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_padded_data_and_trailers_in_continuation_frames(peers: Callable[..., Peer]) -> None:
    long_text = "etcdserver: " + "é%x " * 2000 + "end"  # > 16 KB encoded: CONTINUATIONs

    def handler(peer: Peer, conn: Conn, sid: int, message: bytes) -> None:
        if len(peer.requests) == 1:
            reply(conn, sid, put_reply(7), pad=200)
        else:
            encoded = "".join(
                c if c.isascii() and c not in "%" else "".join(f"%{b:02X}" for b in c.encode())
                for c in long_text
            )
            reply(conn, sid, status=3, text=encoded)

    peer = peers(handler)
    with Client(peer.endpoint, timeout=5) as c:
        assert c.put("/k", "v") == 7
        with pytest.raises(InvalidArgumentError) as info:
            c.put("/k", "v")
    assert str(info.value) == long_text  # percent-decoded, from 2+ frames
    assert peer.connections == 1  # one connection served both (hpack table kept in step)
    assert pb.PutRequest.parse(peer.requests[0][1]).value == b"v"


@pytest.mark.parametrize("refusal", ["REFUSED_STREAM", "GOAWAY before the stream"])
def test_unprocessed_write_is_resent(peers: Callable[..., Peer], refusal: str) -> None:
    """Both guarantee that the request was not processed: even a write is re-sent."""

    def handler(peer: Peer, conn: Conn, sid: int, message: bytes) -> None:
        if len(peer.requests) > 1:
            reply(conn, sid, put_reply(8))
        elif refusal == "REFUSED_STREAM":
            conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
        else:
            conn.close_connection(last_stream_id=0)  # "stream 1 will not be processed"
            peer.hang_up = True

    peer = peers(handler)
    with Client(peer.endpoint, timeout=5) as c:
        assert c.put("/k", "v") == 8
    assert len(peer.requests) == 2


def test_reset_write_is_of_unknown_outcome(peers: Callable[..., Peer]) -> None:
    """Any other reset may come after processing: a write raises, a read is retried."""

    def handler(peer: Peer, conn: Conn, sid: int, message: bytes) -> None:
        conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)

    write_once_read_thrice(
        peers(handler),
        (UnavailableError, "outcome is unknown"),
        (ConnectionFailedError, "reset the stream"),
    )


def test_goaway_after_our_stream_finishes_it_then_reconnects(peers: Callable[..., Peer]) -> None:
    def handler(peer: Peer, conn: Conn, sid: int, message: bytes) -> None:
        if len(peer.requests) == 1:  # GOAWAY(last stream: this one, NO_ERROR) mid-stream
            peer.raw = (
                b"\x00\x00\x08\x07\x00\x00\x00\x00\x00"
                + sid.to_bytes(4, "big")
                + b"\x00\x00\x00\x00"
            )
        reply(conn, sid, put_reply(10 + len(peer.requests)))

    peer = peers(handler)
    with Client(peer.endpoint, timeout=5) as c:
        assert c.put("/k", "v") == 11
        assert c.put("/k", "v") == 12  # not on the connection that is going away
    assert peer.connections == 2


def test_large_request_within_small_flow_control_windows(peers: Callable[..., Peer]) -> None:
    value = bytes(range(256)) * 800  # 200 KB through a 1,000-byte stream window

    def handler(peer: Peer, conn: Conn, sid: int, message: bytes) -> None:
        reply(conn, sid, put_reply(len(peer.requests)))

    peer = peers(handler, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    with Client(peer.endpoint, timeout=10) as c:
        for i in range(1, 4):
            assert c.put("/big", value) == i
    assert [pb.PutRequest.parse(m).value == value for _, m in peer.requests] == [True] * 3


def test_answer_before_the_whole_request_was_read(peers: Callable[..., Peer]) -> None:
    """A server may reject a request from its headers and reset the rest (etcd does so for
    oversized requests): the caller gets the status, not a hang in flow control."""

    def on_headers(peer: Peer, conn: Conn, sid: int) -> None:
        conn.send_headers(
            sid,
            [
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "3"),
                ("grpc-message", "etcdserver: request is too large"),
            ],
            end_stream=True,
        )
        if peer.reset:
            conn.reset_stream(sid, ErrorCodes.NO_ERROR)

    def handler(peer: Peer, conn: Conn, sid: int, message: bytes) -> None:
        raise AssertionError("the request never completes")

    peer = peers(handler, on_headers=on_headers, ack_data=False)
    with Client(peer.endpoint, timeout=10) as c:
        for reset in (True, False):  # the peer resets the rest of the request, or we do
            peer.reset = reset
            with pytest.raises(RequestTooLargeError):
                c.put("/big", b"x" * 300_000)  # more than the peer's windows allow
    assert peer.requests == []
    assert peer.connections == 1
    # the client cancelled the unread rest of stream 3 (stream 1 the peer had reset itself)
    wait_for(lambda: peer.cancelled == [3], what="the peer received the client's CANCEL")


def test_non_grpc_http_status(peers: Callable[..., Peer]) -> None:
    """A proxy's 503 is UNAVAILABLE: a read is retried, a write raises at once."""

    def handler(peer: Peer, conn: Conn, sid: int, message: bytes) -> None:
        conn.send_headers(sid, [(":status", "503")], end_stream=True)

    write_once_read_thrice(
        peers(handler), (UnavailableError, "HTTP status 503"), (UnavailableError, "HTTP status 503")
    )


@pytest.mark.parametrize("seed", range(3))
def test_random_sizes_windows_and_padding(peers: Callable[..., Peer], seed: int) -> None:
    """Random request sizes through random peer windows and frame sizes, random padding on
    replies; the channel's and the pool's invariants hold after every call."""
    rng = random.Random(seed)
    window = rng.randint(1000, 70000)
    frame = rng.choice([16384, rng.randint(16385, 65536)])

    def handler(peer: Peer, conn: Conn, sid: int, message: bytes) -> None:
        reply(conn, sid, put_reply(len(peer.requests)), pad=rng.choice([None, 0, 255]))

    peer = peers(
        handler,
        settings={SettingCodes.INITIAL_WINDOW_SIZE: window, SettingCodes.MAX_FRAME_SIZE: frame},
    )
    sent = []
    with Client(peer.endpoint, timeout=10) as c:
        calls = c._lane_client._calls
        assert isinstance(calls, SyncConnection)
        for i in range(1, 31):
            value = rng.randbytes(rng.choice([0, 1, rng.randint(2, 200_000)]))
            sent.append(value)
            assert c.put(f"/r{i}", value) == i
            calls._check()
            for ch in calls._idle[0]:
                ch._check()
    assert [pb.PutRequest.parse(m).value for _, m in peer.requests] == sent
    assert peer.connections == 1


def test_a_server_that_does_not_speak_http2() -> None:
    """An HTTP/1.1 server (a wrong port) gets a clear error, never a hang or a crash."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with sock:
                sock.recv(65536)
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with Client(f"127.0.0.1:{listener.getsockname()[1]}", timeout=5) as c:
            with pytest.raises(ConnectionFailedError, match="answered in HTTP/1"):
                c.get("/k")
            # it answered our connection preface: the put was never written
            with pytest.raises(ConnectionFailedError, match="answered in HTTP/1"):
                c.put("/k", "v")
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        t.join(5)


@pytest.mark.parametrize("connect_timeout", [0.4, None])
def test_server_silent_after_the_request(
    peers: Callable[..., Peer], connect_timeout: float | None
) -> None:
    """The server takes the request and freezes (reads and writes nothing more): a PING after
    connect_timeout / 2 of silence (or, without connect_timeout, after keepalive) stays
    unanswered and the connection is given up; the write's outcome is unknown (it reached
    the server), a read is retried and fails as unresponsive without waiting for the
    deadline."""
    thaw = threading.Event()
    peer = peers(lambda p, conn, sid, msg: thaw.wait(20))
    try:
        with Client(peer.endpoint, timeout=15, keepalive=0.4, connect_timeout=connect_timeout) as c:
            t0 = time.monotonic()
            with pytest.raises(UnavailableError, match=r"outcome is unknown.*unresponsive"):
                c.put("/k", "v")
            assert time.monotonic() - t0 < 2
            assert len(peer.requests) == 1
            t0 = time.monotonic()
            with pytest.raises(ConnectionFailedError, match="unresponsive"):
                c.get("/k")
            assert time.monotonic() - t0 < 2
    finally:
        thaw.set()
