"""The server's HTTP/2 layer, black-box: a scripted HTTP/2 client against a real coord-server.

The client is the h2 library (``client_side=True``) over a blocking loopback socket
(:class:`H2Client`), plus raw frames written by hand (:func:`frame`) for what h2 will not
send: split or padded header blocks, and the malformed input of RFC 9113's error rules. Every
frame the server sends is also split off the wire (:attr:`H2Client.frames`), so the tests
check frame sizes, frame order and flow-control windows themselves, not only what h2 reports.

This is the regression suite for the server's HTTP/2 implementation: it describes what any
implementation must do (RFC 9113, gRPC over HTTP/2), with one server per module. Where the
grpclib + h2 server of today deviates from the RFC, the test says so in a comment and still
asserts the RFC's answer.
"""

from __future__ import annotations

import itertools
import select
import socket
import struct
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from support import CoordProc

from coord._pb import etcdserverpb as pb
from coord._pb import mvccpb

# ---- frames on the wire (RFC 9113 section 4.1) ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED = 0x4, 0x8
DEFAULT_WINDOW = 65535
MAX_WINDOW = 2**31 - 1
#: How long a misbehaving client waits for the server to close the connection.
ERROR_DEADLINE = 3.0


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    stream_id: int
    payload: bytes

    def serialize(self) -> bytes:
        return frame(self.type, self.flags, self.stream_id, self.payload)

    @property
    def error_code(self) -> int:
        """RST_STREAM's error code, or GOAWAY's."""
        assert self.type in (RST_STREAM, GOAWAY), self
        offset = 4 if self.type == GOAWAY else 0
        return int.from_bytes(self.payload[offset : offset + 4], "big")


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One raw frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes([ftype, flags])
        + (stream_id & MAX_WINDOW).to_bytes(4, "big")
        + payload
    )


def settings_frame(values: dict[int, int] | None = None, flags: int = 0) -> bytes:
    payload = b"".join(struct.pack(">HI", k, v) for k, v in (values or {}).items())
    return frame(SETTINGS, flags, 0, payload)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def split_frames(buf: bytearray) -> list[Frame]:
    """Remove and return the complete frames at the start of ``buf``."""
    out = []
    while len(buf) >= 9:
        length = int.from_bytes(buf[:3], "big")
        if len(buf) < 9 + length:
            break
        sid = int.from_bytes(buf[5:9], "big") & MAX_WINDOW
        out.append(Frame(buf[3], buf[4], sid, bytes(buf[9 : 9 + length])))
        del buf[: 9 + length]
    return out


def errors_of(frames: Sequence[Frame], ftype: int) -> list[tuple[int, int]]:
    """(stream id, error code) of every RST_STREAM or GOAWAY frame among ``frames``."""
    return [(f.stream_id, f.error_code) for f in frames if f.type == ftype]


# ---- gRPC messages ----


def grpc_message(message: bytes, compressed: int = 0) -> bytes:
    """A gRPC length-prefixed message: compressed flag, 4-byte big-endian length, message."""
    return bytes([compressed]) + len(message).to_bytes(4, "big") + message


def grpc_messages(body: bytes) -> list[bytes]:
    """The messages of a response body, which must hold whole messages only."""
    out = []
    view = memoryview(body)
    while view:
        assert len(view) >= 5, f"truncated gRPC message prefix: {bytes(view)!r}"
        assert view[0] == 0, "the server compressed a message nobody asked to compress"
        length = int.from_bytes(view[1:5], "big")
        assert len(view) >= 5 + length, "truncated gRPC message"
        out.append(bytes(view[5 : 5 + length]))
        view = view[5 + length :]
    return out


def grpc_headers(
    path: str,
    *,
    method: str = "POST",
    content_type: str = "application/grpc",
    extra: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    return [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "127.0.0.1"),
        ("content-type", content_type),
        ("te", "trailers"),
        *extra,
    ]


PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
LEASE_GRANT = "/etcdserverpb.Lease/LeaseGrant"
LEASE_KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"


def put_request(key: bytes, value: bytes) -> bytes:
    return bytes(pb.PutRequest(key=key, value=value))


def range_request(key: bytes, range_end: bytes = b"") -> bytes:
    return bytes(pb.RangeRequest(key=key, range_end=range_end))


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def revision(put_response: bytes) -> int:
    """The revision of a PutResponse."""
    header = pb.PutResponse.parse(put_response).header
    assert header is not None
    assert header.revision > 0
    return header.revision


def watch_create(prefix: bytes) -> bytes:
    create = pb.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix))
    return bytes(pb.WatchRequest(create_request=create))


# ---- the client ----


@dataclass
class Call:
    """What the server sent on one stream."""

    stream_id: int
    headers: list[tuple[str, str]] | None = None
    trailers: list[tuple[str, str]] | None = None
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the error code of the server's RST_STREAM

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    @property
    def status(self) -> int:
        assert self.headers is not None, f"no response headers on stream {self.stream_id}"
        return int(dict(self.headers)[":status"])

    def _meta(self) -> dict[str, str]:
        """Trailers, or the headers of a trailers-only response."""
        assert self.ended, f"stream {self.stream_id} did not end (reset: {self.reset})"
        return dict(self.trailers if self.trailers is not None else self.headers or [])

    @property
    def grpc_status(self) -> int:
        return int(self._meta()["grpc-status"])

    @property
    def grpc_message(self) -> str:
        return urllib.parse.unquote(self._meta().get("grpc-message", ""))

    def messages(self) -> list[bytes]:
        return grpc_messages(bytes(self.body))

    def ok(self) -> list[bytes]:
        """The response messages of a successful call (status 200, grpc-status 0)."""
        assert self.status == 200, self.headers
        assert dict(self.headers or [])["content-type"].startswith("application/grpc")
        assert self.grpc_status == 0, (self.grpc_status, self.grpc_message)
        return self.messages()


class H2Client:
    """A scripted HTTP/2 client: an ``h2`` client connection over a blocking loopback socket.

    Nothing happens behind the test's back: bytes are read and events handled only in
    :meth:`pump`, which fails the test at its deadline. Every frame the server sends is also
    split off the raw bytes into :attr:`frames`. The client keeps its own account of the
    receive windows it granted, from the SETTINGS and WINDOW_UPDATE frames that actually left
    (:meth:`flush`), and fails the moment the server sends more DATA than they allow.
    ``auto_window`` lets h2 give back received bytes (h2 sends WINDOW_UPDATEs as it sees fit);
    without it, only :meth:`grant` opens windows.
    """

    def __init__(
        self,
        port: int,
        settings: dict[int, int] | None = None,
        *,
        auto_window: bool = True,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.auto_window = auto_window
        self.calls: dict[int, Call] = {}
        self.frames: list[Frame] = []  # every frame received, in order
        self.sent: list[Frame] = []  # every frame sent, in order
        self.ping_acks: list[bytes] = []
        self.settings_acks = 0
        self.server_settings: list[dict[int, int]] = []  # each SETTINGS frame received
        self.eof = False
        # own accounting of the windows granted to the server
        self.window = DEFAULT_WINDOW
        self.initial_window = DEFAULT_WINDOW
        self.stream_windows: dict[int, int] = {}
        self._unacked: deque[dict[int, int]] = deque()  # SETTINGS we sent, not yet ACKed
        self._in = bytearray()
        self._out_preface = True
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.pump(
            lambda: bool(self.server_settings) and not self._unacked,
            what="the server's SETTINGS and the ACK of ours",
        )

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending --

    def flush(self, transform: Callable[[list[Frame]], list[Frame]] | None = None) -> None:
        """Write what h2 has queued (through ``transform``, which may re-frame it)."""
        data = self.conn.data_to_send()
        if self._out_preface:
            assert data.startswith(PREFACE)
            self.sock.sendall(PREFACE)
            data, self._out_preface = data[len(PREFACE) :], False
        buf = bytearray(data)
        frames = split_frames(buf)
        assert not buf, "h2 queued a partial frame"
        if transform is not None:
            frames = transform(frames)
        self.send_raw(b"".join(f.serialize() for f in frames))

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (frames of :func:`frame`), accounted like h2's own."""
        buf = bytearray(data)
        for f in split_frames(buf):
            self.sent.append(f)
            if f.type == SETTINGS and not f.flags & ACK:
                self._unacked.append(dict(struct.iter_unpack(">HI", f.payload)))
            elif f.type == WINDOW_UPDATE:
                increment = int.from_bytes(f.payload, "big") & MAX_WINDOW
                if f.stream_id == 0:
                    self.window += increment
                elif f.stream_id in self.stream_windows:
                    self.stream_windows[f.stream_id] += increment
        if data:
            self.sock.sendall(data)

    def grant(self, stream_id: int, increment: int) -> None:
        """A WINDOW_UPDATE for a stream (or the connection, stream 0)."""
        self.conn.increment_flow_control_window(increment, stream_id or None)
        self.flush()

    def update_settings(self, values: dict[int, int]) -> None:
        self.conn.update_settings(values)
        self.flush()

    def start(
        self,
        path: str,
        message: bytes | None = None,
        *,
        end: bool = True,
        headers: list[tuple[str, str]] | None = None,
        transform: Callable[[list[Frame]], list[Frame]] | None = None,
    ) -> int:
        """Open a stream with a gRPC request (one message, or none) and return its id; the
        request ends there unless ``end`` is false."""
        sid = self.conn.get_next_available_stream_id()
        self.calls[sid] = Call(sid)
        self.stream_windows[sid] = self.initial_window
        end_headers = end and message is None
        self.conn.send_headers(sid, headers or grpc_headers(path), end_stream=end_headers)
        self.flush(transform)
        if message is not None:
            self.send(sid, grpc_message(message), end=end)
        return sid

    def send(self, sid: int, data: bytes, *, end: bool = False, timeout: float = 10.0) -> bool:
        """Send request bytes within the server's windows (waiting for WINDOW_UPDATEs); stop
        early, returning False, if the server ends or resets the stream first."""
        call = self.calls[sid]
        view = memoryview(data)
        while view:
            if call.done:
                return False
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.pump(
                    lambda: call.done or self.conn.local_flow_control_window(sid) > 0,
                    timeout,
                    what=f"the server to open its window for stream {sid}",
                )
                continue
            chunk, view = view[:room], view[room:]
            self.conn.send_data(sid, bytes(chunk), end_stream=end and not view)
            self.flush()
        if end and not data:
            self.conn.end_stream(sid)
            self.flush()
        return True

    # -- receiving --

    def pump(self, until: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        """Read and handle what the server sends until ``until()`` holds."""
        deadline = time.monotonic() + timeout
        while not until():
            if self.eof:
                raise AssertionError(f"the server closed the connection; waiting for {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            if select.select([self.sock], [], [], left)[0]:
                self._read()

    def _read(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self._in += data
        self.frames += split_frames(self._in)
        for ev in self.conn.receive_data(data):
            self._handle(ev)
        self.flush()

    def _handle(self, ev: h2.events.Event) -> None:
        if isinstance(ev, h2.events.ResponseReceived):
            self.calls[ev.stream_id].headers = list(ev.headers)  # type: ignore[arg-type]
        elif isinstance(ev, h2.events.TrailersReceived):
            self.calls[ev.stream_id].trailers = list(ev.headers)  # type: ignore[arg-type]
        elif isinstance(ev, h2.events.DataReceived):
            assert ev.stream_id is not None
            assert ev.data is not None
            n = ev.flow_controlled_length or 0
            self.window -= n
            self.stream_windows[ev.stream_id] -= n
            assert self.window >= 0, f"DATA beyond the connection window ({self.window})"
            assert self.stream_windows[ev.stream_id] >= 0, (
                f"DATA beyond stream {ev.stream_id}'s window ({self.stream_windows[ev.stream_id]})"
            )
            self.calls[ev.stream_id].body += ev.data
            if self.auto_window:
                self.conn.acknowledge_received_data(n, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.calls[ev.stream_id].ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if ev.remote_reset and ev.stream_id in self.calls:
                self.calls[ev.stream_id].reset = ev.error_code
        elif isinstance(ev, h2.events.PingAckReceived):
            assert ev.ping_data is not None
            self.ping_acks.append(ev.ping_data)
        elif isinstance(ev, h2.events.SettingsAcknowledged):
            self.settings_acks += 1
            acked = self._unacked.popleft()
            if SettingCodes.INITIAL_WINDOW_SIZE in acked:
                new = acked[SettingCodes.INITIAL_WINDOW_SIZE]
                delta, self.initial_window = new - self.initial_window, new
                for sid in self.stream_windows:
                    self.stream_windows[sid] += delta
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.server_settings.append({k: v.new_value for k, v in ev.changed_settings.items()})

    def drain(self, sids: Sequence[int], timeout: float = 10.0) -> None:
        """Grant windows as the server uses them up, until streams ``sids`` are done."""
        calls = [self.calls[s] for s in sids]

        def low() -> list[int]:
            return [
                s
                for s, c in zip(sids, calls, strict=True)
                if not c.done and self.stream_windows[s] < 16384
            ]

        deadline = time.monotonic() + timeout
        while not all(c.done for c in calls):
            self.pump(
                lambda: all(c.done for c in calls) or self.window < 16384 or bool(low()),
                deadline - time.monotonic(),
                what=f"the end of streams {list(sids)}",
            )
            if self.window < 16384:
                self.grant(0, DEFAULT_WINDOW - self.window)
            for s in low():
                self.grant(s, DEFAULT_WINDOW - self.stream_windows[s])

    def wait(self, sid: int, timeout: float = 10.0) -> Call:
        """Wait until stream ``sid`` ends (or is reset)."""
        call = self.calls[sid]
        self.pump(lambda: call.done, timeout, what=f"the end of stream {sid}")
        return call

    def events(self, sid: int, count: int, timeout: float = 10.0) -> list[mvccpb.Event]:
        """Wait until Watch stream ``sid`` has ``count`` events in all; return them."""
        call = self.calls[sid]

        def events() -> list[mvccpb.Event]:
            try:
                messages = call.messages()
            except AssertionError:  # a message still arriving
                return []
            return [ev for m in messages for ev in pb.WatchResponse.parse(m).events]

        self.pump(lambda: len(events()) >= count, timeout, what=f"{count} events on {sid}")
        return events()

    def messages(self, sid: int, count: int, timeout: float = 10.0) -> list[bytes]:
        """Wait until stream ``sid`` has ``count`` whole messages; return them."""
        call = self.calls[sid]

        def enough() -> bool:
            try:
                return len(call.messages()) >= count
            except AssertionError:  # a message still arriving
                return False

        self.pump(enough, timeout, what=f"{count} messages on stream {sid}")
        return call.messages()

    def call(self, path: str, message: bytes, timeout: float = 10.0) -> Call:
        return self.wait(self.start(path, message), timeout)

    def put(self, key: bytes, value: bytes) -> int:
        """A Put that must succeed; its revision."""
        (data,) = self.call(PUT, put_request(key, value)).ok()
        return revision(data)

    def range(self, key: bytes, range_end: bytes = b"") -> pb.RangeResponse:
        (data,) = self.call(RANGE, range_request(key, range_end)).ok()
        return pb.RangeResponse.parse(data)

    def ping(self, payload: bytes, timeout: float = 10.0) -> None:
        self.conn.ping(payload)
        self.flush()
        self.pump(lambda: payload in self.ping_acks, timeout, what="the PING's ACK")

    def frames_on(self, sid: int, since: int = 0) -> list[Frame]:
        """The frames received on stream ``sid`` (from the ``since``-th frame received on)."""
        return [f for f in self.frames[since:] if f.stream_id == sid]

    def sent_on(self, sid: int) -> list[Frame]:
        return [f for f in self.sent if f.stream_id == sid]


def read_to_eof(sock: socket.socket, timeout: float = ERROR_DEADLINE) -> bytes:
    """Everything the server sends until it closes the connection (within ``timeout``)."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the server did not close the connection within {timeout}s")
        if not select.select([sock], [], [], left)[0]:
            continue
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return bytes(out)
        if not data:
            return bytes(out)
        out += data


def raw_exchange(port: int, data: bytes) -> list[Frame]:
    """Connect, send the preface, an empty SETTINGS and ``data``; return every frame the server
    sent until it closed the connection (which must happen within :data:`ERROR_DEADLINE`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(PREFACE + settings_frame() + data)
        buf = bytearray(read_to_eof(sock))
    frames = split_frames(buf)
    assert not buf, f"a partial frame before EOF: {bytes(buf)[:40]!r}"
    return frames


def assert_connection_error(frames: Sequence[Frame], code: ErrorCodes) -> None:
    """The server ended the connection (the caller saw EOF) for a connection error ``code``:
    a GOAWAY, if it sent one (RFC 9113 section 5.4.1: SHOULD), carries that code, and it is
    the last frame."""
    goaways = errors_of(frames, GOAWAY)
    if goaways:
        assert [c for _, c in goaways] == [code], (goaways, frames)
        assert frames[-1].type == GOAWAY, frames[-1]


# ---- fixtures ----


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordProc]:
    proc = CoordProc(tmp_path_factory.mktemp("h2server"))
    yield proc
    proc.stop()


@pytest.fixture
def port(server: CoordProc) -> Iterator[int]:
    yield server.client_port
    assert server.alive(), f"coord-server died:\n{server.output()[-4000:]}"


@pytest.fixture
def client(port: int) -> Iterator[H2Client]:
    with H2Client(port) as c:
        yield c


@pytest.fixture
def key(prefix: str) -> bytes:
    """A key prefix of this test's own (``prefix`` ends with "/")."""
    return prefix.encode()


def assert_healthy(port: int, key: bytes) -> None:
    """A fresh connection serves a Put and a Range."""
    with H2Client(port) as c:
        rev = c.put(key + b"health", b"ok")
        resp = c.range(key + b"health")
        assert [(kv.key, kv.value) for kv in resp.kvs] == [(key + b"health", b"ok")]
        assert resp.header is not None
        assert resp.header.revision >= rev


# ---- 1. flow control ----


def test_server_keeps_within_small_client_windows(port: int, key: bytes) -> None:
    value = bytes(range(256)) * 800  # 200 KiB
    with H2Client(port) as c:
        c.put(key + b"big", value)
    with H2Client(
        port, {SettingCodes.INITIAL_WINDOW_SIZE: 1000}, auto_window=False
    ) as c:  # the connection window stays at its default, 65535
        sid = c.start(RANGE, range_request(key + b"big"))
        call = c.calls[sid]
        # 1000 bytes, then nothing until a WINDOW_UPDATE (more would fail in _handle)
        c.pump(lambda: c.stream_windows[sid] == 0, what="the first 1000 bytes")
        assert len(call.body) == 1000
        # small stream grants, the connection window given back as it is used
        for grant in (1, 999, 4000, 12000):
            before = len(call.body)
            c.grant(sid, grant)
            c.pump(lambda: c.stream_windows[sid] == 0, what=f"{grant} more bytes")
            assert len(call.body) == before + grant
            c.grant(0, DEFAULT_WINDOW - c.window)  # never above the default
        # a stream window larger than the rest: now the connection window is the limit
        c.grant(sid, 2 * len(value))
        while not call.ended:
            c.pump(lambda: call.ended or c.window == 0, what="a full connection window")
            if not call.ended:
                c.grant(0, 16384)
        assert c.window >= 0
        assert c.stream_windows[sid] >= 0
        (data,) = call.ok()
        assert [kv.value for kv in pb.RangeResponse.parse(data).kvs] == [value]
        data_frames = [f for f in c.frames_on(sid) if f.type == DATA]
        assert sum(len(f.payload) for f in data_frames) == len(call.body)
        assert max(len(f.payload) for f in data_frames) <= 16384


def test_client_keeps_within_server_windows_for_1mib_put(client: H2Client, key: bytes) -> None:
    value = bytes(range(251)) * 4200  # ~1 MiB: above any default window of a server
    settings = {k: v for s in client.server_settings for k, v in s.items()}
    window = settings.get(SettingCodes.INITIAL_WINDOW_SIZE, DEFAULT_WINDOW)
    assert window < len(value)  # the Put must wait for the server's WINDOW_UPDATEs
    message = grpc_message(put_request(key + b"mb", value))
    sid = client.start(PUT, end=False)
    client.send(sid, message, end=True)  # h2 keeps within the windows the server grants
    (data,) = client.wait(sid).ok()
    revision(data)
    sent = [f for f in client.sent_on(sid) if f.type == DATA]
    assert b"".join(f.payload for f in sent) == message
    max_frame = settings.get(SettingCodes.MAX_FRAME_SIZE, 16384)
    assert len(sent) > len(message) // max_frame
    assert max(len(f.payload) for f in sent) <= max_frame
    # the server gave the stream's window back as it read (and the connection's, if small)
    assert [f for f in client.frames_on(sid) if f.type == WINDOW_UPDATE] != []
    assert [kv.value for kv in client.range(key + b"mb").kvs] == [value]


# ---- 2. SETTINGS ----


def test_server_sends_settings_first_and_acks_ours(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(PREFACE + settings_frame({SettingCodes.MAX_CONCURRENT_STREAMS: 50}))
        buf = bytearray()
        frames: list[Frame] = []
        deadline = time.monotonic() + 5
        while not any(f.type == SETTINGS and f.flags & ACK for f in frames):
            assert time.monotonic() < deadline, f"no SETTINGS ACK: {frames}"
            if select.select([sock], [], [], 0.5)[0]:
                data = sock.recv(65536)
                assert data, f"EOF after {frames}"
                buf += data
                frames += split_frames(buf)
        # RFC 9113 section 3.4: the server preface is a SETTINGS frame, first thing sent
        first = frames[0]
        assert (first.type, first.flags, first.stream_id) == (SETTINGS, 0, 0)
        assert len(first.payload) % 6 == 0
        acks = [f for f in frames if f.type == SETTINGS and f.flags & ACK]
        assert [(f.stream_id, f.payload) for f in acks] == [(0, b"")]
        sock.sendall(settings_frame(flags=ACK))  # ACK the server's, then it serves us
        ping_round_trip(sock, frames, buf)


def ping_round_trip(sock: socket.socket, frames: list[Frame], buf: bytearray) -> None:
    """A PING round trip on a raw connection (no GOAWAY meanwhile): the server still serves
    it. ``frames`` and ``buf`` are what was received so far, extended here."""
    sock.sendall(frame(PING, 0, 0, b"rawping!"))
    deadline = time.monotonic() + 5
    while True:
        for f in frames:
            assert f.type != GOAWAY, f"GOAWAY {f.error_code}"
        if any(f.type == PING and f.flags & ACK and f.payload == b"rawping!" for f in frames):
            return
        assert time.monotonic() < deadline, f"no PING ACK: {frames}"
        if select.select([sock], [], [], 0.5)[0]:
            data = sock.recv(65536)
            assert data, f"EOF after {frames}"
            buf += data
            frames += split_frames(buf)


def test_max_frame_size_16384_bounds_data_frames(port: int, key: bytes) -> None:
    value = b"x" * 100_000
    with H2Client(port, {SettingCodes.MAX_FRAME_SIZE: 16384}) as c:
        c.put(key + b"f", value)
        sid = c.start(RANGE, range_request(key + b"f"))
        (data,) = c.wait(sid).ok()
        assert [kv.value for kv in pb.RangeResponse.parse(data).kvs] == [value]
        sizes = [len(f.payload) for f in c.frames_on(sid) if f.type == DATA]
        assert sum(sizes) > 100_000
        assert max(sizes) <= 16384


def test_initial_window_size_change_mid_connection_is_acked_and_applied(
    port: int, key: bytes
) -> None:
    value = b"y" * 50_000
    with H2Client(port, {SettingCodes.INITIAL_WINDOW_SIZE: 1000}, auto_window=False) as c:
        c.put(key + b"s", value)
        sid = c.start(RANGE, range_request(key + b"s"))
        call = c.calls[sid]
        c.pump(lambda: c.stream_windows[sid] == 0, what="1000 bytes")
        assert len(call.body) == 1000
        # raising INITIAL_WINDOW_SIZE by 4000 grows the open stream's window by 4000 too
        # (RFC 9113 section 6.9.2), without any WINDOW_UPDATE
        acks = c.settings_acks
        c.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 5000})
        c.pump(lambda: c.settings_acks == acks + 1, what="the ACK of the new SETTINGS")
        c.pump(lambda: c.stream_windows[sid] == 0, what="4000 more bytes")
        assert len(call.body) == 5000
        # a new stream starts with the new window
        sid2 = c.start(RANGE, range_request(key + b"s"))
        c.pump(lambda: c.stream_windows[sid2] == 0, what="5000 bytes on a new stream")
        assert len(c.calls[sid2].body) == 5000
        c.drain([sid, sid2])
        for s in (sid, sid2):
            (data,) = c.calls[s].ok()
            assert [kv.value for kv in pb.RangeResponse.parse(data).kvs] == [value]


# ---- 3. PING ----


def test_ping_is_acked_with_its_payload_also_during_a_call(client: H2Client, key: bytes) -> None:
    client.ping(b"\x00\x01\x02\x03\xfc\xfd\xfe\xff")
    sid = client.start(WATCH, watch_create(key), end=False)  # an open stream
    (created,) = client.messages(sid, 1)
    assert pb.WatchResponse.parse(created).created
    client.ping(b"inflight")
    acks = [f for f in client.frames if f.type == PING]
    assert [(f.flags, f.stream_id, f.payload) for f in acks] == [
        (ACK, 0, b"\x00\x01\x02\x03\xfc\xfd\xfe\xff"),
        (ACK, 0, b"inflight"),
    ]
    assert not client.calls[sid].done


# ---- 4. GOAWAY from the client ----


def test_goaway_from_the_client_during_a_call(port: int, key: bytes) -> None:
    with H2Client(port) as c:
        sid = c.start(PUT, put_request(key + b"g", b"after goaway"))
        # "no more streams from me" (last stream id 0: no server-initiated stream seen); raw,
        # because h2 takes in nothing after its own GOAWAY
        c.send_raw(frame(GOAWAY, 0, 0, struct.pack(">II", 0, ErrorCodes.NO_ERROR)))
        c.pump(lambda: c.calls[sid].done or c.eof, what="the answer or the end of the connection")
        call = c.calls[sid]
        goaways = [f for f in c.frames if f.type == GOAWAY]
        assert [f.error_code for f in goaways] == [ErrorCodes.NO_ERROR] * len(goaways)
        assert errors_of(c.frames, RST_STREAM) == []
        if call.done:
            # the server has nothing left to do but the call in flight: it answers it (and
            # leaves closing the connection to the client)
            (data,) = call.ok()
            revision(data)
            expected: list[list[bytes]] = [[b"after goaway"]]
        else:
            # the server may also end the connection at once (RFC 9113 section 6.8 does not
            # oblige it to finish the client's streams); the grpclib server of today does,
            # without a GOAWAY of its own (a SHOULD): the Put may or may not have been applied
            # unless a GOAWAY says it was not (its last stream id below the Put's)
            processed = all(int.from_bytes(f.payload[:4], "big") >= sid for f in goaways)
            expected = [[], [b"after goaway"]] if processed else [[]]
    assert_healthy(port, key)
    with H2Client(port) as c:
        assert [kv.value for kv in c.range(key + b"g").kvs] in expected


# ---- 5. RST_STREAM from the client ----


def test_rst_stream_on_a_watch_stream(client: H2Client, key: bytes) -> None:
    watched = client.start(WATCH, watch_create(key + b"a/"), end=False)
    (created,) = client.messages(watched, 1)
    assert pb.WatchResponse.parse(created).created
    other = client.start(WATCH, watch_create(key + b"a/"), end=False)  # same keys, kept
    client.messages(other, 1)
    client.conn.reset_stream(watched, ErrorCodes.CANCEL)
    client.flush()
    mark = len(client.frames)
    client.put(key + b"a/1", b"v1")
    client.put(key + b"a/2", b"v2")
    # the other watcher gets both events: the events went out, just not on the reset stream
    keys = [ev.kv.key for ev in client.events(other, 2) if ev.kv]
    assert keys == [key + b"a/1", key + b"a/2"]
    client.ping(b"afterrst")
    # nothing at all on the reset stream afterwards (no RST_STREAM in answer to ours either,
    # RFC 9113 section 5.4.2)
    assert client.frames_on(watched, mark) == []
    assert client.calls[watched].body == grpc_message(created)
    assert not client.calls[watched].done


def test_rst_stream_on_an_unfinished_unary_call(client: H2Client, key: bytes) -> None:
    request = grpc_message(put_request(key + b"r", b"never"))
    sid = client.start(PUT, end=False)
    client.send(sid, request[:10])  # half a request: the server waits for the rest
    client.conn.reset_stream(sid, ErrorCodes.CANCEL)
    client.flush()
    mark = len(client.frames)
    client.put(key + b"r2", b"v")  # the connection goes on
    read_rst = len(client.frames)  # the server answered what came after our RST_STREAM
    assert client.range(key + b"r").kvs == []  # the reset request was not applied
    client.ping(b"afterrst")
    # what the server had queued before it read the RST_STREAM may still arrive (RFC 9113
    # section 5.1, "closed"): here at most a WINDOW_UPDATE for the 10 bytes; nothing at all
    # once it has read it
    assert {f.type for f in client.frames[mark:read_rst] if f.stream_id == sid} <= {WINDOW_UPDATE}
    assert client.frames_on(sid, read_rst) == []
    # a whole Put reset right after it was sent: at most its answer was already on the way
    sid = client.start(PUT, put_request(key + b"r3", b"v"))
    client.conn.reset_stream(sid, ErrorCodes.CANCEL)
    client.flush()
    client.ping(b"rst2rst2")
    assert all(f.type in (HEADERS, DATA) for f in client.frames_on(sid))
    assert client.range(key + b"r2").kvs[0].value == b"v"


# ---- 6., 7., 8. header blocks in pieces, padding, request trailers ----


def split_header_block(pieces: int) -> Callable[[list[Frame]], list[Frame]]:
    """Re-frame the (one) HEADERS frame as HEADERS + ``pieces - 1`` CONTINUATION frames."""

    def transform(frames: list[Frame]) -> list[Frame]:
        (headers,) = frames
        assert headers.type == HEADERS
        assert headers.flags & END_HEADERS
        block = headers.payload
        cut = [len(block) * i // pieces for i in range(pieces + 1)]
        parts = [block[a:b] for a, b in itertools.pairwise(cut)]
        out = [Frame(HEADERS, headers.flags & ~END_HEADERS, headers.stream_id, parts[0])]
        for i, part in enumerate(parts[1:], 2):
            flags = END_HEADERS if i == pieces else 0
            out.append(Frame(CONTINUATION, flags, headers.stream_id, part))
        return out

    return transform


def pad(f: Frame, padding: int) -> Frame:
    """``f`` (HEADERS or DATA) with a Pad Length field and ``padding`` zero bytes."""
    assert f.type in (HEADERS, DATA)
    assert not f.flags & PADDED
    return Frame(
        f.type, f.flags | PADDED, f.stream_id, bytes([padding]) + f.payload + bytes(padding)
    )


def test_header_block_in_headers_and_two_continuation_frames(client: H2Client, key: bytes) -> None:
    headers = [*grpc_headers(PUT), ("x-long-metadata", "m" * 3000)]
    sid = client.start(PUT, end=False, headers=headers, transform=split_header_block(3))
    client.send(sid, grpc_message(put_request(key + b"c", b"continued")), end=True)
    sent = [(f.type, f.flags) for f in client.sent_on(sid)]
    assert sent == [
        (HEADERS, 0),
        (CONTINUATION, 0),
        (CONTINUATION, END_HEADERS),
        (DATA, END_STREAM),
    ]
    (data,) = client.wait(sid).ok()
    revision(data)
    assert [kv.value for kv in client.range(key + b"c").kvs] == [b"continued"]


def test_padded_headers_and_data_frames(client: H2Client, key: bytes) -> None:
    sid = client.start(PUT, end=False, transform=lambda fs: [pad(f, 17) for f in fs])
    message = grpc_message(put_request(key + b"p", b"padded"))
    client.conn.send_data(sid, message[:7], pad_length=255)
    client.flush()
    client.conn.send_data(sid, message[7:], end_stream=True, pad_length=0)  # an empty pad
    client.flush()
    sent = [(f.type, f.flags, f.payload[0], len(f.payload)) for f in client.sent_on(sid)]
    assert sent[1:] == [
        (DATA, PADDED, 255, 1 + 7 + 255),
        (DATA, PADDED | END_STREAM, 0, len(message) - 6),
    ]
    assert sent[0][:3] == (HEADERS, END_HEADERS | PADDED, 17)
    (data,) = client.wait(sid).ok()
    revision(data)
    # the padding is not part of the value
    assert [kv.value for kv in client.range(key + b"p").kvs] == [b"padded"]


def test_request_ended_by_trailers(client: H2Client, key: bytes) -> None:
    sid = client.start(PUT, put_request(key + b"t", b"trailed"), end=False)
    client.conn.send_headers(sid, [("x-request-trailer", "1")], end_stream=True)
    client.flush()
    sent = [(f.type, f.flags) for f in client.sent_on(sid)]
    assert sent == [(HEADERS, END_HEADERS), (DATA, 0), (HEADERS, END_HEADERS | END_STREAM)]
    (data,) = client.wait(sid).ok()
    revision(data)
    assert [kv.value for kv in client.range(key + b"t").kvs] == [b"trailed"]


# ---- 9. many streams ----


def test_200_concurrent_puts_on_one_connection(client: H2Client, key: bytes) -> None:
    limit = client.conn.remote_settings.max_concurrent_streams  # 2**32 + 1 if not advertised
    todo = deque(range(200))
    open_: set[int] = set()
    done: dict[int, Call] = {}
    most = 0
    while todo or open_:
        while todo and len(open_) < limit:
            i = todo.popleft()
            open_.add(client.start(PUT, put_request(key + b"%03d" % i, b"v%d" % i)))
        most = max(most, len(open_))
        client.pump(lambda: any(client.calls[s].done for s in open_), what="a Put to finish")
        for s in [s for s in open_ if client.calls[s].done]:
            open_.discard(s)
            done[s] = client.calls[s]
    assert most == min(200, limit)
    revisions = {revision(data) for c in done.values() for data in c.ok()}
    assert len(revisions) == 200
    resp = client.range(key, prefix_end(key))
    assert len(resp.kvs) == 200


# ---- 10. large messages ----


def test_put_of_1mib_value(client: H2Client, key: bytes) -> None:
    value = b"\xab" * (1024 * 1024)
    client.put(key + b"l", value)
    assert [kv.value for kv in client.range(key + b"l").kvs] == [value]


def test_message_over_receive_limit_is_resource_exhausted(client: H2Client, key: bytes) -> None:
    limit = 1572864 + 512 * 1024  # --max-request-bytes + gRPC overhead, as etcd
    message = put_request(key + b"huge", b"h" * (limit + 10))
    assert len(message) > limit
    sid = client.start(PUT, end=False)
    # the server may answer from the length prefix alone: then the rest is not sent
    sent_all = client.send(sid, grpc_message(message), end=True)
    call = client.wait(sid)
    assert call.status == 200
    assert call.grpc_status == 8  # RESOURCE_EXHAUSTED
    assert call.grpc_message == (
        f"grpc: received message larger than max ({len(message)} vs. {limit})"
    )
    assert call.messages() == []
    if not sent_all and call.reset is None:  # our half of the stream is still open
        client.conn.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
    # the connection is fine
    client.put(key + b"after", b"ok")
    assert client.range(key + b"huge").kvs == []


# ---- 11. streams and unary calls on one connection ----


def test_watch_and_keepalive_streams_beside_unary_calls(client: H2Client, key: bytes) -> None:
    w = key + b"w/"
    watch = client.start(WATCH, watch_create(w), end=False)
    (created,) = client.messages(watch, 1)
    assert pb.WatchResponse.parse(created).created
    revisions = [client.put(w + b"%d" % i, b"e%d" % i) for i in range(3)]
    events = client.events(watch, 3)
    assert [(ev.type, ev.kv.key, ev.kv.value, ev.kv.mod_revision) for ev in events if ev.kv] == [
        (mvccpb.EventEventType.PUT, w + b"%d" % i, b"e%d" % i, revisions[i]) for i in range(3)
    ]
    (grant,) = client.call(LEASE_GRANT, bytes(pb.LeaseGrantRequest(ttl=30))).ok()
    lease = pb.LeaseGrantResponse.parse(grant).id
    assert lease != 0
    keepalive = client.start(LEASE_KEEPALIVE, end=False)
    for n in range(1, 4):
        client.send(keepalive, grpc_message(bytes(pb.LeaseKeepAliveRequest(id=lease))))
        answers = client.messages(keepalive, n)
        assert pb.LeaseKeepAliveResponse.parse(answers[-1]).id == lease
        assert pb.LeaseKeepAliveResponse.parse(answers[-1]).ttl == 30
        client.put(w + b"k%d" % n, b"x")  # a unary call between keep-alives
    assert [ev.kv.key for ev in client.events(watch, 6)[3:] if ev.kv] == [
        w + b"k%d" % n for n in range(1, 4)
    ]
    assert not client.calls[watch].done
    assert not client.calls[keepalive].done
    # half-closing the keep-alive stream ends it normally
    client.send(keepalive, b"", end=True)
    assert client.wait(keepalive).grpc_status == 0


# ---- 12. malformed input: connection errors ----


def test_garbage_instead_of_the_preface(port: int, key: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x00\x00\x12\x04\x00garbage, not an HTTP/2 preface\r\n\r\n")
        answer = read_to_eof(sock)
    # the port also serves HTTP/1.1 (the JSON gateway): bytes that are not the HTTP/2
    # preface go there, and get HTTP/1.1's answer to a bad request line
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert b"illegal request line" in answer
    assert_healthy(port, key)


BAD_HPACK = b"\xff\xff\xff\xff\xff\xff"  # an indexed field with an over-long index


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(
            frame(HEADERS, 0x5, 0, b"\x82"), ErrorCodes.PROTOCOL_ERROR, id="headers-on-stream-0"
        ),
        pytest.param(
            frame(HEADERS, 0x5, 2, b"\x83\x86\x84"), ErrorCodes.PROTOCOL_ERROR, id="even-stream-id"
        ),
        pytest.param(
            frame(DATA, 0x1, 1, b"\x00\x00\x00\x00\x00"),
            ErrorCodes.PROTOCOL_ERROR,
            id="data-on-idle-stream",
        ),
        pytest.param(
            frame(CONTINUATION, END_HEADERS, 1, b"\x83"),
            ErrorCodes.PROTOCOL_ERROR,
            id="continuation-without-headers",
        ),
        pytest.param(
            window_update(0, 0), ErrorCodes.PROTOCOL_ERROR, id="window-update-0-connection"
        ),
        pytest.param(
            window_update(0, MAX_WINDOW),
            ErrorCodes.FLOW_CONTROL_ERROR,
            id="window-overflow-connection",
        ),
        # RFC 9113 section 4.3. h2 (the server of today) calls it a PROTOCOL_ERROR, but the
        # GOAWAY never reaches the wire there (grpclib closes the socket without flushing it)
        pytest.param(
            frame(HEADERS, 0x5, 1, BAD_HPACK), ErrorCodes.COMPRESSION_ERROR, id="bad-hpack"
        ),
        pytest.param(
            settings_frame({SettingCodes.ENABLE_PUSH: 2}),
            ErrorCodes.PROTOCOL_ERROR,
            id="enable-push-2",
        ),
        pytest.param(
            settings_frame({SettingCodes.INITIAL_WINDOW_SIZE: 2**31}),
            ErrorCodes.FLOW_CONTROL_ERROR,
            id="initial-window-too-big",
        ),
        pytest.param(frame(PING, 0, 0, b"1234567"), ErrorCodes.FRAME_SIZE_ERROR, id="ping-7-bytes"),
    ],
)
def test_malformed_input_is_a_connection_error(
    port: int, key: bytes, data: bytes, code: ErrorCodes
) -> None:
    frames = raw_exchange(port, data)
    assert_connection_error(frames, code)
    assert_healthy(port, key)


def test_frame_above_the_servers_max_frame_size(port: int, key: bytes) -> None:
    # a HEADERS frame (RFC 9113 section 4.2: one that can change the connection's state,
    # so a connection error), one byte above the SETTINGS_MAX_FRAME_SIZE the server announced
    with H2Client(port) as c:
        limit = c.conn.max_outbound_frame_size
        c.send_raw(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x00" * (limit + 1)))
        c.pump(lambda: c.eof, ERROR_DEADLINE, what="the server to close the connection")
        assert_connection_error(c.frames, ErrorCodes.FRAME_SIZE_ERROR)
        assert c.calls == {}
    assert_healthy(port, key)


def test_preface_must_be_followed_by_settings(port: int, key: bytes) -> None:
    # RFC 9113 section 3.4: the client preface is the magic string *and* a SETTINGS frame;
    # an invalid preface is a connection error (PROTOCOL_ERROR). The grpclib server of today
    # answers the PING instead and waits: it fails this test.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(PREFACE + frame(PING, 0, 0, b"notfirst"))
        buf = bytearray(read_to_eof(sock))
    frames = split_frames(buf)
    assert [f for f in frames if f.type == PING] == []
    assert_connection_error(frames, ErrorCodes.PROTOCOL_ERROR)
    assert_healthy(port, key)


@pytest.mark.parametrize(
    ("increment", "code"),
    [(0, ErrorCodes.PROTOCOL_ERROR), (MAX_WINDOW, ErrorCodes.FLOW_CONTROL_ERROR)],
    ids=["increment-0", "overflow"],
)
def test_bad_window_update_on_a_stream(
    client: H2Client, port: int, key: bytes, increment: int, code: ErrorCodes
) -> None:
    """A stream error (RFC 9113 sections 6.9, 6.9.1): RST_STREAM with ``code``, the connection
    carrying on; or, as any stream error may be (section 5.4.2), a connection error with that
    code. The grpclib server of today resets the stream on an overflow and closes the
    connection (without a GOAWAY) on an increment of 0."""
    sid = client.start(WATCH, watch_create(key), end=False)
    client.messages(sid, 1)
    mark = len(client.frames)
    client.send_raw(window_update(sid, increment))
    client.pump(
        lambda: client.calls[sid].reset is not None or client.eof, ERROR_DEADLINE, what="an error"
    )
    if client.eof:
        assert_connection_error(client.frames[mark:], code)
    else:
        assert client.calls[sid].reset == code
        assert [(f.type, f.error_code) for f in client.frames_on(sid, mark)] == [(RST_STREAM, code)]
        client.put(key + b"after", b"ok")
    assert_healthy(port, key)


# ---- 13. requests that are not gRPC ----


def assert_trailers_only(call: Call) -> None:
    """The answer was one HEADERS frame with END_STREAM (no body, no trailers, no reset)."""
    assert call.ended
    assert call.reset is None
    assert call.trailers is None
    assert call.body == b""


def test_wrong_content_type_is_415(client: H2Client) -> None:
    # gRPC over HTTP/2: a content-type that is not application/grpc SHOULD get HTTP 415, so
    # that no HTTP client takes the answer for a success. The server of today also names
    # the reason in grpc-status 2 (UNKNOWN) and grpc-message (grpclib's text).
    headers = grpc_headers(RANGE, content_type="text/plain")
    call = client.wait(client.start(RANGE, range_request(b"x"), headers=headers))
    assert_trailers_only(call)
    assert dict(call.headers or []) == {
        ":status": "415",
        "grpc-status": "2",
        "grpc-message": "Unacceptable content-type header",
    }


def test_unknown_method_is_unimplemented(client: H2Client) -> None:
    call = client.call("/etcdserverpb.KV/Nope", b"")
    assert_trailers_only(call)
    # a Trailers-Only response: HTTP-Status Content-Type Trailers (gRPC over HTTP/2). The
    # grpclib server of today leaves out the content-type, which the spec requires (grpc-go
    # then reports "malformed header: missing HTTP content-type", code UNKNOWN, instead of
    # UNIMPLEMENTED): it fails this test.
    headers = dict(call.headers or [])
    assert headers.get("content-type", "").startswith("application/grpc"), headers
    assert (call.status, call.grpc_status, call.grpc_message) == (200, 12, "Method not found")


def test_get_instead_of_post_is_405(client: H2Client) -> None:
    headers = grpc_headers(RANGE, method="GET")
    call = client.wait(client.start(RANGE, headers=headers))
    assert_trailers_only(call)
    assert call.headers == [(":status", "405")]  # no grpc-status: not a gRPC request


# ---- 14. grpc-timeout ----


def test_grpc_timeout_ends_a_watch_with_deadline_exceeded(client: H2Client, key: bytes) -> None:
    headers = [*grpc_headers(WATCH), ("grpc-timeout", "1m")]
    sid = client.start(WATCH, watch_create(key), end=False, headers=headers)
    call = client.wait(sid, timeout=5)
    assert call.status == 200
    assert call.grpc_status == 4, (call.headers, call.trailers)
    # the request stream is still open: the server may end it with RST_STREAM(NO_ERROR) after
    # its complete response (RFC 9113 section 8.1), as the server of today does
    assert call.reset in (None, ErrorCodes.NO_ERROR)


def test_grpc_timeout_10s_put(client: H2Client, key: bytes) -> None:
    headers = [*grpc_headers(PUT), ("grpc-timeout", "10S")]
    sid = client.start(PUT, put_request(key + b"to", b"v"), headers=headers)
    (data,) = client.wait(sid).ok()
    revision(data)


# ---- 15. metadata ----


def test_custom_and_binary_metadata(client: H2Client, key: bytes) -> None:
    headers = [
        *grpc_headers(PUT),
        ("token", "not-a-real-token"),  # auth is off: ignored, like etcd
        ("x-trace-bin", "AAECAwQF/w"),  # base64 without padding, as gRPC sends it
        ("user-agent", "h2-test/1.0"),
    ]
    sid = client.start(PUT, put_request(key + b"md", b"v"), headers=headers)
    (data,) = client.wait(sid).ok()
    revision(data)
