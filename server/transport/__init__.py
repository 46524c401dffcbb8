"""coord.server.transport: the Raft peer transport (raw TCP, length-prefixed msgpack frames)."""

from __future__ import annotations

from .dial import discover
from .frames import FrameType, Hello, read_frame, write_frame
from .peer import PeerHandler, PeerTransport

__all__ = [
    "FrameType",
    "Hello",
    "PeerHandler",
    "PeerTransport",
    "discover",
    "read_frame",
    "write_frame",
]
