"""A grpclib codec that lets handlers work with raw bytes.

``encode`` passes ``bytes`` through untouched (responses pre-assembled from stored bytes) and
falls back to betterproto2's ``bytes(msg)`` for message objects; ``decode`` returns the raw
request bytes, which handlers validate and parse themselves (see ``api.common``). Clients
using this codec get raw response bytes too (the benchmark uses that to skip parsing).
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.base import CodecBase

__all__ = ["RawCodec"]


class RawCodec(CodecBase):
    """Pass-through protobuf codec (content subtype ``proto``)."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        """``bytes`` as is, betterproto2 messages encoded."""
        if type(message) is bytes:
            return message
        if isinstance(message, bytearray | memoryview):
            return bytes(message)
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        """The raw bytes (handlers parse them)."""
        return data
