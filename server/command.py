"""Replicated commands: what the API layer proposes and every member's state machine applies.

Theory of operation: a command is one *kind* byte followed by the protobuf bytes of the
etcd request it carries (``PUT`` + the PutRequest exactly as the client sent it, so the hot
path never re-encodes). The proposer resolves everything non-deterministic before proposing
(a lease grant carries the ID and the effective TTL it chose), so applying a command is a pure
function of the state and the command bytes.

The state machine answers every command with a *result*: 8 bytes of little-endian store
revision after the apply, followed by the response body without its header (field 1). The API
layer turns the revision into a ResponseHeader and prepends it (see :func:`split_result`).
"""

from __future__ import annotations

import struct
from enum import IntEnum

__all__ = ["Kind", "decode", "encode", "make_result", "split_result"]


class Kind(IntEnum):
    """The first byte of a command."""

    PUT = 1  #: etcdserverpb.PutRequest
    DELETE_RANGE = 2  #: etcdserverpb.DeleteRangeRequest
    TXN = 3  #: etcdserverpb.TxnRequest (read-only txns are not proposed)
    COMPACT = 4  #: etcdserverpb.CompactionRequest
    LEASE_GRANT = 5  #: etcdserverpb.LeaseGrantRequest with ID and effective TTL filled in
    LEASE_REVOKE = 6  #: etcdserverpb.LeaseRevokeRequest (client revoke or leader expiry)
    ALARM = 7  #: etcdserverpb.AlarmRequest with ACTIVATE/DEACTIVATE and member_id filled in
    NOOP = 8  #: empty payload; answers with the current revision (used as a barrier)
    #: etcdserverpb.LeaseCheckpointRequest: remaining TTLs the leader replicates (etcd #9888)
    LEASE_CHECKPOINT = 9
    #: a server.auth.Op byte, then the auth request (passwords already hashed)
    AUTH = 10


_REV = struct.Struct("<q")


def encode(kind: Kind, payload: bytes) -> bytes:
    """The command bytes for ``kind`` carrying ``payload`` (a request's protobuf bytes)."""
    return bytes((kind,)) + payload


def decode(command: bytes) -> tuple[Kind, bytes]:
    """Split command bytes into (kind, payload); ValueError on an unknown kind."""
    if not command:
        raise ValueError("empty command")
    return Kind(command[0]), command[1:]


def make_result(revision: int, body: bytes = b"") -> bytes:
    """An apply result: the store revision after the apply, then the response body."""
    return _REV.pack(revision) + body


def split_result(result: bytes) -> tuple[int, bytes]:
    """Inverse of :func:`make_result`: (revision, body)."""
    return _REV.unpack_from(result)[0], result[8:]
