"""Peer-transport framing: ``u32 length | u8 type | payload`` over a byte stream.

``length`` counts the payload only (big-endian).  Payloads are msgpack (see
:mod:`coord.server.raftcodec`).  The first frame on every connection is HELLO; the acceptor
answers ACCEPT or REJECT (with a reason) before anything else flows.
"""

from __future__ import annotations

import enum
import struct

import anyio.abc
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME",
    "PROBES",
    "FrameType",
    "Hello",
    "encode_frame",
    "read_frame",
    "write_frame",
]

_HEAD = struct.Struct(">IB")
#: Bytes of a frame before its payload (length, type).
HEADER_SIZE = _HEAD.size
MAX_FRAME = 256 * 1024 * 1024


class FrameType(enum.IntEnum):
    """Frame kinds."""

    HELLO = 1  # payload: Hello
    ACCEPT = 2  # payload: empty
    REJECT = 3  # payload: utf-8 reason; the sender closes the connection
    MESSAGES = 4  # payload: msgpack list[Message] (one batch = one Ready for this peer)
    SNAPSHOT = 5  # payload: msgpack list[Message] holding one MsgSnap
    SNAPSHOT_ACK = 6  # payload: empty, Raft took the snapshot; else why Raft refused it
    MEMBERS = 7  # payload: msgpack membership document (answer to a discovery HELLO)
    CALL = 8  # payload: msgpack [method, body]: a leader-only request forwarded by a follower
    RESULT = 9  # payload: msgpack [ok, body or error text]
    PROBE = 10  # payload: 8-byte probe number (a raft connection whose ACCEPT said PROBES)
    PROBE_ACK = 11  # payload: the probe's number, echoed by the acceptor


#: ACCEPT payload of an acceptor that answers PROBE frames (older members send an empty one).
PROBES = b"probes"


class Hello(msgspec.Struct, array_like=True):
    """Handshake: who is calling whom in which cluster, and why.

    ``kind`` is ``"raft"`` (stream of MESSAGES), ``"snapshot"`` (one SNAPSHOT) or
    ``"discover"`` (a joining member asking for the member list; cluster_id/from_id may be 0)
    or ``"call"`` (CALL/RESULT pairs: requests only the leader can answer).
    """

    cluster_id: int
    from_id: int
    to_id: int
    kind: str = "raft"


def encode_frame(ftype: FrameType, payload: bytes) -> bytes:
    """One frame as bytes."""
    return _HEAD.pack(len(payload), int(ftype)) + payload


async def write_frame(stream: anyio.abc.ByteSendStream, ftype: FrameType, payload: bytes) -> None:
    """Send one frame."""
    await stream.send(encode_frame(ftype, payload))


async def read_frame(
    reader: BufferedByteReceiveStream, max_size: int = MAX_FRAME
) -> tuple[FrameType, bytes]:
    """Receive one frame.

    Raises:
        anyio.IncompleteRead / anyio.EndOfStream: the peer closed the connection.
        ValueError: the frame is larger than ``max_size`` or of an unknown type.
    """
    head = await reader.receive_exactly(_HEAD.size)
    length, ftype = _HEAD.unpack(head)
    if length > max_size:
        raise ValueError(f"peer frame of {length} bytes exceeds the {max_size} byte limit")
    payload = await reader.receive_exactly(length) if length else b""
    try:
        return FrameType(ftype), payload
    except ValueError:
        raise ValueError(f"unknown peer frame type {ftype}") from None
