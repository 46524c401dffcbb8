"""What a server checks in the frames a client sends: RFC 9113 section 6, frame by frame.

Each function reads one kind of frame payload and raises the error the RFC prescribes:
:class:`H2ConnectionError` (the connection ends with GOAWAY and that code) or
:class:`H2StreamError` (only that stream ends, with RST_STREAM). The connection
(:mod:`.h2conn`) calls them before it acts on a frame; nothing here keeps state.
"""

from __future__ import annotations

import struct

from coord._h2wire import (
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    MAX_WINDOW,
    PADDED,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
)

__all__ = [
    "ENABLE_PUSH",
    "HEADER_TABLE_SIZE",
    "INITIAL_WINDOW_SIZE",
    "MAX_FRAME_SIZE",
    "H2ConnectionError",
    "H2StreamError",
    "control_frame",
    "header_fragment",
    "settings",
    "unpad",
    "window_increment",
]

# SETTINGS identifiers a server acts on
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5


class H2ConnectionError(Exception):
    """A connection error: GOAWAY with ``code``; ``str()`` says why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class H2StreamError(Exception):
    """A stream error: RST_STREAM on ``sid`` with ``code``."""

    def __init__(self, sid: int, code: int) -> None:
        super().__init__(sid, code)
        self.sid = sid
        self.code = code


def unpad(payload: bytes, flags: int) -> bytes:
    """A DATA or HEADERS payload without its padding."""
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise H2ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]


def header_fragment(sid: int, payload: bytes, flags: int) -> bytes:
    """A HEADERS frame's header block fragment (padding and priority removed)."""
    if sid == 0 or sid % 2 == 0:
        raise H2ConnectionError(PROTOCOL_ERROR, f"HEADERS on stream {sid}")
    payload = unpad(payload, flags)
    if flags & PRIORITY_FLAG:
        if len(payload) < 5:
            raise H2ConnectionError(FRAME_SIZE_ERROR, "HEADERS priority truncated")
        payload = payload[5:]
    return payload


#: frame type -> (name, whether it belongs on stream 0, its fixed payload length)
_CONTROL = {
    2: ("PRIORITY", False, 5),
    3: ("RST_STREAM", False, 4),
    6: ("PING", True, 8),
    7: ("GOAWAY", True, None),
}


def control_frame(ftype: int, sid: int, payload: bytes) -> None:
    """Check a PRIORITY, RST_STREAM, PING or GOAWAY frame's stream and length."""
    name, on_zero, size = _CONTROL[ftype]
    if (sid == 0) != on_zero:
        raise H2ConnectionError(PROTOCOL_ERROR, f"{name} on stream {sid}")
    if size is not None and len(payload) != size:
        if name == "PRIORITY":
            raise H2StreamError(sid, FRAME_SIZE_ERROR)
        raise H2ConnectionError(FRAME_SIZE_ERROR, f"{name} of {len(payload)} bytes")
    if name == "GOAWAY" and len(payload) < 8:
        raise H2ConnectionError(FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")


def window_increment(payload: bytes) -> int:
    """A WINDOW_UPDATE's increment (0 is the caller's to refuse: its error depends on the
    stream)."""
    if len(payload) != 4:
        raise H2ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong length")
    return int.from_bytes(payload, "big") & 0x7FFFFFFF


def settings(sid: int, payload: bytes) -> list[tuple[int, int]]:
    """A SETTINGS frame's (identifier, value) pairs, each value checked."""
    if sid:
        raise H2ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
    if len(payload) % 6:
        raise H2ConnectionError(FRAME_SIZE_ERROR, "SETTINGS of the wrong length")
    pairs = [struct.unpack_from(">HI", payload, i) for i in range(0, len(payload), 6)]
    for key, value in pairs:
        if key == ENABLE_PUSH and value > 1:
            raise H2ConnectionError(PROTOCOL_ERROR, "ENABLE_PUSH must be 0 or 1")
        if key == INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
            raise H2ConnectionError(FLOW_CONTROL_ERROR, "initial window too large")
        if key == MAX_FRAME_SIZE and not 16384 <= value < 2**24:
            raise H2ConnectionError(PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
    return pairs
