"""HTTP/2's wire constants and the two encoders both of coord's lean HTTP/2 ends share.

The blocking client's channel (:mod:`coord._h2`) and the server's connection
(:mod:`coord.server.http.h2conn`) each speak the part of HTTP/2 (RFC 9113) that gRPC needs;
this module holds what they have in common: frame types, flags, error codes, settings and
limits, :func:`frame` (the 9-byte frame header and payload) and :func:`literal` (one header as
an HPACK literal without indexing, so an encoder keeps no dynamic table).
"""

from __future__ import annotations

import struct

from ._protowire import encode_varint

__all__ = [
    "ACK",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "ENHANCE_YOUR_CALM",
    "FLOW_CONTROL_ERROR",
    "FRAME_SIZE_ERROR",
    "GOAWAY",
    "HEADERS",
    "MAX_FRAME",
    "MAX_STREAM_ID",
    "MAX_WINDOW",
    "NO_ERROR",
    "PADDED",
    "PING",
    "PREFACE",
    "PRIORITY",
    "PRIORITY_FLAG",
    "PROTOCOL_ERROR",
    "PUSH_PROMISE",
    "REFUSED_STREAM",
    "RST_STREAM",
    "SETTINGS",
    "STREAM_CLOSED",
    "WINDOW_UPDATE",
    "frame",
    "hpack_int",
    "literal",
]

#: The fixed first 24 bytes of every HTTP/2 connection (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
(
    DATA,
    HEADERS,
    PRIORITY,
    RST_STREAM,
    SETTINGS,
    PUSH_PROMISE,
    PING,
    GOAWAY,
    WINDOW_UPDATE,
    CONTINUATION,
) = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# error codes (RFC 9113 section 7)
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

MAX_WINDOW = 2**31 - 1
MAX_FRAME = 16384  # HTTP/2's default frame size; coord's ends never accept larger ones
MAX_STREAM_ID = 2**31 - 1


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    """One frame: 24-bit length, type, flags, 31-bit stream ID, payload."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((ftype, flags))
        + struct.pack(">I", sid)
        + payload
    )


def hpack_int(n: int) -> bytes:
    """HPACK integer with a 7-bit prefix (the string-length form, Huffman bit clear): past the
    prefix, the remainder is a little-endian base-128 varint, as in protobuf."""
    return bytes((n,)) if n < 127 else b"\x7f" + encode_varint(n - 127)


def literal(name: str, value: str) -> bytes:
    """One header as an HPACK literal without indexing (new name): no encoder state."""
    n, v = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(n)) + n + hpack_int(len(v)) + v
