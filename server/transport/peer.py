"""Raft peer transport: one outbound TCP connection per peer, length-prefixed msgpack frames.

Theory of operation
-------------------
Every member listens on its ``--listen-peer-urls`` and keeps one *outbound* connection to each
other member (messages from A to B always travel on A's connection to B; inbound connections are
read-only).  A connection starts with a HELLO frame (cluster id, sender id, receiver id, kind);
the acceptor answers ACCEPT, or REJECT with a reason and closes -- a member of another cluster
(different ``--initial-cluster-token``), a wrong receiver id or a removed member is refused.

Sending (:meth:`PeerTransport.send`) never blocks the caller: the messages of one Ready are
grouped per destination into one batch and put on that peer's bounded queue (a memory object
stream).  The peer's sender task takes everything queued (coalescing batches), encodes it as one
MESSAGES frame and writes it with one ``send`` (which waits for the socket to drain: that is the
back-pressure).  When the queue is full -- the peer is slow, partitioned or down -- the batch is
dropped and Raft is told the peer is unreachable (``on_unreachable``), which makes the leader
fall back to probing; Raft retransmits what matters.  Connection failures are retried with
exponential backoff (50 ms .. 1 s); while disconnected, queued batches are discarded.

While a raft connection is up, the sender probes it every :data:`PROBE_INTERVAL` (a PROBE
frame behind the queued messages, answered PROBE_ACK by the acceptor): the round-trip time
and every byte and dropped message are counted per peer in :meth:`PeerTransport.stats`
(:mod:`.stats`). An acceptor that answers probes says so in its ACCEPT (:data:`.frames.PROBES`);
a sender probes only such acceptors, so members of older versions interoperate.

Forwarded leader-only requests (:meth:`PeerTransport.call`) travel on one further connection
per peer (kind ``call``, :mod:`.calls`).  Connections are dialed by :mod:`.dial`.

Snapshots (MsgSnap) can be large and must not stall heartbeats, so each is sent on its own
short-lived connection (kind ``snapshot``); the receiver steps it into Raft
(``on_snapshot``) and answers SNAPSHOT_ACK, with a reason as payload when Raft refused it.  The
result is reported with ``on_snapshot_status(peer, failed)``: a refused snapshot counts as
failed.  After a failure the next snapshot to that peer waits (backoff doubling from 0.1 s to
5 s, reset by a success): Raft asks again as soon as it hears from the follower, and a
snapshot that keeps failing must not be re-encoded and resent in a hot loop.

A ``discover`` HELLO (:func:`.dial.discover`, a joining member asking) is answered with a
MEMBERS frame: the cluster id and the member list.

All tasks live in the task group of :meth:`PeerTransport.run`; cancelling that scope (the node
stopping) closes every listener and connection.
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from coord.server import raftcodec as codec
from coord.server.listen import bind_all, close_all
from coord.server.raft.types import Message, MessageType
from coord.server.tls import is_tls_url, tls_listener
from coord.server.urls import parse_url

from .calls import CallConn, serve_calls
from .dial import CONNECT_TIMEOUT, Rejected, describe, dial
from .frames import HEADER_SIZE, PROBES, FrameType, Hello, encode_frame, read_frame, write_frame
from .handler import PeerHandler
from .stats import PeerStats

__all__ = ["PeerHandler", "PeerTransport"]

log = logging.getLogger(__name__)

_HELLO_DEC = msgspec.msgpack.Decoder(Hello)
_ENC = msgspec.msgpack.Encoder()
REMOVED_REASON = "removed"
#: SNAPSHOT_ACK payload of a refused snapshot (Raft's restore() returned false).
SNAPSHOT_REFUSED = (
    b"raft refused the snapshot (not newer than the receiver's commit index, "
    b"or the receiver is not in its configuration)"
)
#: Wait before the next snapshot to a peer after a failed one: doubles from/to (seconds).
SNAPSHOT_BACKOFF = (0.1, 5.0)
#: Seconds between round-trip probes on a raft connection, and before an unanswered one fails.
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 5.0
_PROBE_NUMBER = struct.Struct(">Q")


@dataclass
class _Peer:
    id: int
    urls: list[str]
    send: MemoryObjectSendStream[list[Message]]
    recv: MemoryObjectReceiveStream[list[Message]]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    connected: bool = False
    snapshot_in_flight: bool = False
    # Delay before the next snapshot send (0 after a success; see SNAPSHOT_BACKOFF).
    snapshot_backoff: float = 0.0
    stats: PeerStats = field(default_factory=PeerStats)
    probe_due: bool = False  # the pump writes a PROBE with its next frame
    probe_number: int = 0  # of the probe in flight, or the last one
    probe_asked: float = 0.0  # when the pump was asked for it
    probe_sent: float | None = None  # when the probe in flight was written

    def close(self) -> None:
        """Close both ends of the outbound queue (a sender then drops, a reader ends)."""
        self.send.close()
        self.recv.close()


class PeerTransport:
    """See the module docstring."""

    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        listen_urls: list[str],
        handler: PeerHandler,
        queue_batches: int = 256,
        max_backoff: float = 1.0,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        sockets: dict[str, list[socket.socket]] | None = None,
    ) -> None:
        self.member_id = member_id
        # Listening sockets per listen URL, bound before the node touched its data directory
        # (server/listen.py); without them, run() binds listen_urls itself.
        self._sockets = sockets
        # TLS (server/tls.py): https:// listen URLs serve with server_ssl; https:// peer URLs
        # are dialed with client_ssl (verifies the peer, presents our --peer-cert-file).
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.cluster_id = cluster_id
        self.listen_urls = list(listen_urls)
        self.handler = handler
        self.queue_batches = queue_batches
        self.max_backoff = max_backoff
        self._peers: dict[int, _Peer] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._inbound: dict[int, list[anyio.abc.ByteStream]] = {}
        self._call_conns: dict[int, CallConn] = {}
        self._call_locks: dict[int, anyio.Lock] = {}
        self.call_dials = 0  # call connections dialed (one per peer while it stays up)
        self.frames_sent = 0
        self.frames_received = 0
        #: bytes and MsgApps received per peer (inbound connections), kept across reconnects
        self._received: dict[int, int] = {}
        self._appends_received: dict[int, int] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the peer listeners and run the peer senders until cancelled (the listen
        sockets given to the constructor, else bound now)."""
        bound = self._sockets if self._sockets is not None else bind_all(self.listen_urls, "peers")
        self._sockets = None  # owned by the listeners below from here on
        listeners: list[anyio.abc.Listener[Any]] = []
        try:
            for url, socks in bound.items():
                for sock in socks:
                    listener: anyio.abc.Listener[Any] = await anyio.abc.SocketListener.from_socket(
                        sock
                    )
                    if is_tls_url(url):
                        if self.server_ssl is None:
                            await listener.aclose()
                            raise OSError(f"{url}: https peer URL without --peer-cert-file")
                        listener = tls_listener(listener, self.server_ssl)
                    listeners.append(listener)
        except BaseException:
            for lst in listeners:
                await lst.aclose()
            close_all(s for socks in bound.values() for s in socks)
            raise
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for lst in listeners:
                    tg.start_soon(lst.serve, self._handle_inbound, tg)
                for url in bound:
                    log.info("listening for peers on %s", url)
                for peer in self._peers.values():
                    tg.start_soon(self._run_peer, peer)
                task_status.started()
                await anyio.sleep(math.inf)
        finally:
            self._tg = None
            for p in self._peers.values():
                p.close()
            with anyio.CancelScope(shield=True):
                for lst in listeners:
                    await lst.aclose()

    def set_peers(self, peers: dict[int, list[str]]) -> None:
        """Set the full peer map (``member id -> peer URLs``); self is ignored."""
        peers = {k: v for k, v in peers.items() if k != self.member_id}
        for pid in list(self._peers):
            if pid not in peers:
                p = self._peers.pop(pid)
                self._received.pop(pid, None)
                self._appends_received.pop(pid, None)
                p.scope.cancel()
                p.close()
                self._close_call_conn(pid)
        for pid, urls in peers.items():
            cur = self._peers.get(pid)
            if cur is not None:
                if cur.urls != list(urls):
                    cur.urls = list(urls)
                    cur.scope.cancel()  # reconnect to the new address
                    self._replace(cur)
                    self._close_call_conn(pid)
                continue
            snd, rcv = anyio.create_memory_object_stream[list[Message]](self.queue_batches)
            peer = _Peer(pid, list(urls), snd, rcv)
            self._peers[pid] = peer
            if self._tg is not None:
                self._tg.start_soon(self._run_peer, peer)

    def _replace(self, old: _Peer) -> None:
        snd, rcv = anyio.create_memory_object_stream[list[Message]](self.queue_batches)
        old.close()
        peer = _Peer(old.id, old.urls, snd, rcv, stats=old.stats)
        self._peers[old.id] = peer
        if self._tg is not None:
            self._tg.start_soon(self._run_peer, peer)

    def stats(self) -> dict[int, PeerStats]:
        """Every peer's counts (received bytes included), by member ID."""
        out = {}
        for pid, p in self._peers.items():
            p.stats.received_bytes = self._received.get(pid, 0)
            p.stats.appends_received = self._appends_received.get(pid, 0)
            out[pid] = p.stats
        return out

    def is_connected(self, peer_id: int) -> bool:
        """True while the outbound connection to ``peer_id`` is established."""
        p = self._peers.get(peer_id)
        return p is not None and p.connected

    # -- sending -------------------------------------------------------------------------------

    def send(self, msgs: Iterable[Message]) -> None:
        """Queue messages (one batch per destination); never blocks."""
        batches: dict[int, list[Message]] = {}
        for m in msgs:
            if m.type == MessageType.SNAP:
                self._start_snapshot(m)
                continue
            batches.setdefault(m.to, []).append(m)
        for to, batch in batches.items():
            peer = self._peers.get(to)
            if peer is None:
                continue
            try:
                peer.send.send_nowait(batch)
                peer.stats.appends_sent += sum(m.type == MessageType.APP for m in batch)
            except anyio.WouldBlock:
                self._dropped(peer, batch)
                self.handler.on_unreachable(to)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def _start_snapshot(self, m: Message) -> None:
        peer = self._peers.get(m.to)
        if peer is None or self._tg is None or peer.snapshot_in_flight:
            self.handler.on_snapshot_status(m.to, True)
            return
        peer.snapshot_in_flight = True
        self._tg.start_soon(self._send_snapshot, peer, m)

    async def _send_snapshot(self, peer: _Peer, m: Message) -> None:
        failed = True
        index = m.snapshot.metadata.index if m.snapshot else 0
        try:
            if peer.snapshot_backoff:
                await anyio.sleep(peer.snapshot_backoff)
            stream, _ = await self._connect(peer, "snapshot")
            async with stream:
                await write_frame(stream, FrameType.SNAPSHOT, codec.encode([m]))
                reader = BufferedByteReceiveStream(stream)
                with anyio.fail_after(60):
                    ftype, payload = await read_frame(reader, 64 * 1024)
            if ftype != FrameType.SNAPSHOT_ACK:
                raise OSError(f"unexpected answer {ftype!r}")
            if payload:
                log.warning(
                    "snapshot at index %d refused by %x: %s",
                    index,
                    peer.id,
                    payload.decode(errors="replace"),
                )
            else:
                failed = False
                log.info(
                    "sent snapshot at index %d (%d bytes) to %x",
                    index,
                    len(m.snapshot.data) if m.snapshot else 0,
                    peer.id,
                )
        except Exception as e:
            log.warning("sending snapshot %d to %x failed: %s", index, peer.id, describe(e))
        finally:
            peer.snapshot_in_flight = False
            lo, hi = SNAPSHOT_BACKOFF
            peer.snapshot_backoff = min(hi, max(lo, 2 * peer.snapshot_backoff)) if failed else 0.0
        self.handler.on_snapshot_status(peer.id, failed)

    async def _connect(self, peer: _Peer, kind: str) -> tuple[anyio.abc.ByteStream, bytes]:
        """A connection of ``kind`` to ``peer``, handshaken; and the acceptor's ACCEPT payload."""
        last: Exception = OSError(f"no peer URL for {peer.id:x}")
        for url in peer.urls:
            host, port = parse_url(url)
            try:
                with anyio.fail_after(CONNECT_TIMEOUT):
                    stream = await dial(host, port, self.client_ssl if is_tls_url(url) else None)
            except (OSError, TimeoutError) as e:
                last = e
                continue
            try:
                hello = Hello(self.cluster_id, self.member_id, peer.id, kind)
                await write_frame(stream, FrameType.HELLO, _ENC.encode(hello))
                reader = BufferedByteReceiveStream(stream)
                with anyio.fail_after(CONNECT_TIMEOUT * 2):
                    ftype, payload = await read_frame(reader, 64 * 1024)
                if ftype == FrameType.REJECT:
                    raise Rejected(payload.decode(errors="replace"))
                if ftype != FrameType.ACCEPT:
                    raise OSError(f"unexpected handshake frame {ftype!r}")
                return stream, payload
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                raise
        raise last

    async def _run_peer(self, peer: _Peer) -> None:
        backoff = 0.05
        with peer.scope:
            while True:
                try:
                    stream, accepted = await self._connect(peer, "raft")
                except Rejected as e:
                    log.error("peer %x rejected our connection: %s", peer.id, e)
                    if str(e).startswith(REMOVED_REASON):
                        self.handler.on_removed_by_peer(peer.id)
                    self._drain(peer)
                    await anyio.sleep(self.max_backoff)
                    continue
                except Exception as e:
                    log.debug("connect to peer %x failed: %s", peer.id, describe(e))
                    self._drain(peer)
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                backoff = 0.05
                peer.connected = True
                log.info("connected to peer %x", peer.id)
                try:
                    async with stream, anyio.create_task_group() as tg:
                        tg.start_soon(self._read_acks, peer, stream, tg.cancel_scope)
                        if accepted == PROBES:
                            tg.start_soon(self._probe, peer)
                        await self._pump(peer, stream)
                except Exception as e:
                    log.info("connection to peer %x lost: %s", peer.id, describe(e))
                finally:
                    peer.connected = False
                    peer.probe_due, peer.probe_sent = False, None
                self.handler.on_unreachable(peer.id)

    async def _read_acks(
        self, peer: _Peer, stream: anyio.abc.ByteStream, scope: anyio.CancelScope
    ) -> None:
        """The acceptor writes nothing after ACCEPT but PROBE_ACKs: anything else, or the end
        of the stream, means the connection is gone."""
        reader = BufferedByteReceiveStream(stream)
        try:
            while True:
                ftype, payload = await read_frame(reader, 64)
                if ftype != FrameType.PROBE_ACK:
                    break
                if peer.probe_sent is not None and payload == _PROBE_NUMBER.pack(peer.probe_number):
                    peer.stats.round_trip(time.monotonic() - peer.probe_sent)
                    peer.probe_sent = None
        except (
            OSError,
            ValueError,
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
        ):
            pass
        scope.cancel()

    async def _probe(self, peer: _Peer) -> None:
        """Ask the pump for a PROBE every PROBE_INTERVAL; one in flight at a time."""
        while True:
            await anyio.sleep(PROBE_INTERVAL)
            now = time.monotonic()
            if peer.probe_sent is not None or peer.probe_due:  # asked for, not answered yet
                if now - peer.probe_asked < PROBE_TIMEOUT:
                    continue
                peer.stats.probes_failed += 1  # the peer, its loop or the connection stalls
                peer.probe_sent = None
            peer.probe_number += 1
            peer.probe_asked = now
            peer.probe_due = True
            try:
                peer.send.send_nowait([])  # wakes the pump
            except anyio.WouldBlock:
                pass  # the pump has work queued: it writes the probe after it

    async def _pump(self, peer: _Peer, stream: anyio.abc.ByteStream) -> None:
        stats = peer.stats
        while True:
            batch = await peer.recv.receive()
            while True:
                try:
                    batch.extend(peer.recv.receive_nowait())
                except anyio.WouldBlock:
                    break
            frame = encode_frame(FrameType.MESSAGES, codec.encode(batch)) if batch else b""
            if peer.probe_due:
                peer.probe_due = False
                frame += encode_frame(FrameType.PROBE, _PROBE_NUMBER.pack(peer.probe_number))
                peer.probe_sent = time.monotonic()
            if not frame:
                continue
            await stream.send(frame)
            stats.sent_bytes += len(frame)
            self.frames_sent += 1

    @staticmethod
    def _dropped(peer: _Peer, batch: list[Message]) -> None:
        peer.stats.sent_failures += len(batch)
        peer.stats.heartbeat_failures += sum(m.type == MessageType.HEARTBEAT for m in batch)

    def _drain(self, peer: _Peer) -> None:
        """Discard queued batches while the peer is unreachable (Raft will retransmit)."""
        dropped = False
        while True:
            try:
                batch = peer.recv.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if batch:  # not a probe's wake-up
                self._dropped(peer, batch)
                dropped = True
        if dropped:
            self.handler.on_unreachable(peer.id)

    async def call(self, peer_id: int, method: str, body: bytes, timeout: float = 5.0) -> bytes:
        """Send a CALL to ``peer_id`` on the peer's call connection and return its RESULT body.

        Raises:
            OSError: the peer could not be reached or reported an error.
            TimeoutError: no answer within ``timeout``.
        """
        if peer_id not in self._peers:
            raise OSError(f"unknown peer {peer_id:x}")
        with anyio.fail_after(timeout):
            conn = await self._call_conn(peer_id)
            ok, result = await conn.call(method, body)
        if not ok:
            raise OSError(result.decode(errors="replace"))
        return result

    async def _call_conn(self, peer_id: int) -> CallConn:
        """The open call connection to ``peer_id``, dialed (once, for all callers) if needed."""
        conn = self._call_conns.get(peer_id)
        if conn is not None and conn.open:
            return conn
        lock = self._call_locks.setdefault(peer_id, anyio.Lock())
        async with lock:
            conn = self._call_conns.get(peer_id)
            if conn is not None and conn.open:
                return conn
            peer = self._peers.get(peer_id)
            if peer is None or self._tg is None:
                raise OSError(f"unknown peer {peer_id:x}")
            try:
                stream, _ = await self._connect(peer, "call")
            except Rejected as e:
                raise OSError(f"peer {peer_id:x} refused the call: {e}") from None
            self.call_dials += 1
            conn = CallConn(peer_id, stream)
            self._call_conns[peer_id] = conn
            self._tg.start_soon(conn.read_results)
            return conn

    def _close_call_conn(self, peer_id: int) -> None:
        conn = self._call_conns.pop(peer_id, None)
        if conn is not None:
            conn.close()

    # -- receiving -----------------------------------------------------------------------------

    async def _handle_inbound(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            try:
                with anyio.fail_after(5):
                    ftype, payload = await read_frame(reader, 64 * 1024)
                if ftype != FrameType.HELLO:
                    return
                hello = _HELLO_DEC.decode(payload)
                if hello.kind == "discover":
                    await write_frame(stream, FrameType.MEMBERS, self.handler.members_document())
                    return
                reason = self._check_hello(hello)
                if reason:
                    log.warning("rejecting peer connection from %x: %s", hello.from_id, reason)
                    await write_frame(stream, FrameType.REJECT, reason.encode())
                    return
                await write_frame(stream, FrameType.ACCEPT, PROBES if hello.kind == "raft" else b"")
                if hello.kind == "call":
                    await serve_calls(self.handler.on_call, reader, stream)
                    return
                conns = self._inbound.setdefault(hello.from_id, [])
                conns.append(stream)
                try:
                    await self._receive(reader, stream, hello.from_id)
                finally:
                    conns.remove(stream)
            except (
                OSError,
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                TimeoutError,
            ) as e:
                log.debug("inbound peer connection closed: %s", e)
            except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as e:
                log.warning("bad frame from peer, closing: %s", e)
            except Exception as e:
                log.error("inbound peer connection failed: %s", describe(e), exc_info=e)

    async def drop_inbound(self, peer_id: int) -> None:
        """Close every inbound connection from ``peer_id`` (e.g. it was removed)."""
        for stream in list(self._inbound.get(peer_id, [])):
            await stream.aclose()

    async def _receive(
        self, reader: BufferedByteReceiveStream, stream: anyio.abc.ByteStream, from_id: int
    ) -> None:
        received = self._received
        while True:
            ftype, payload = await read_frame(reader)
            self.frames_received += 1
            received[from_id] = received.get(from_id, 0) + HEADER_SIZE + len(payload)
            if ftype == FrameType.MESSAGES:
                msgs = [m for m in codec.decode_messages(payload) if m.to == self.member_id]
                appends = self._appends_received
                appends[from_id] = appends.get(from_id, 0) + sum(
                    m.type == MessageType.APP for m in msgs
                )
                self.handler.on_messages(msgs)
            elif ftype == FrameType.SNAPSHOT:
                snaps = [m for m in codec.decode_messages(payload) if m.to == self.member_id]
                refused = [m for m in snaps if not self.handler.on_snapshot(m)]
                reason = b"" if snaps and not refused else SNAPSHOT_REFUSED
                await write_frame(stream, FrameType.SNAPSHOT_ACK, reason)
            elif ftype == FrameType.PROBE:
                await write_frame(stream, FrameType.PROBE_ACK, payload)

    def _check_hello(self, hello: Hello) -> str:
        if hello.cluster_id != self.cluster_id:
            return f"cluster ID mismatch (local {self.cluster_id:x}, remote {hello.cluster_id:x})"
        if hello.to_id != self.member_id:
            return f"member ID mismatch (this is {self.member_id:x}, not {hello.to_id:x})"
        if self.handler.is_removed(hello.from_id):
            return f"{REMOVED_REASON}: member {hello.from_id:x} was removed from the cluster"
        return ""
