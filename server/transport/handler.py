"""PeerHandler: what the peer transport calls back into (the node driver implements it)."""

from __future__ import annotations

from typing import Protocol

from coord.server.raft.types import Message

__all__ = ["PeerHandler"]


class PeerHandler(Protocol):
    """What the transport calls back into (the node driver)."""

    def on_messages(self, msgs: list[Message]) -> None:
        """Raft messages arrived from a peer.  Must not raise: a message Raft refuses is the
        handler's to act on (the node stops itself); here it would only close the connection."""

    def on_snapshot(self, m: Message) -> bool:
        """A MsgSnap arrived: step it into Raft; True when Raft took it (will install it)."""

    def on_unreachable(self, peer_id: int) -> None:
        """Messages to ``peer_id`` were dropped (queue full or connection failed)."""

    def on_snapshot_status(self, peer_id: int, failed: bool) -> None:
        """A snapshot send to ``peer_id`` finished."""

    def members_document(self) -> bytes:
        """The membership document served to discovering members."""

    def is_removed(self, member_id: int) -> bool:
        """True when ``member_id`` was removed from the cluster."""

    def on_removed_by_peer(self, peer_id: int) -> None:
        """``peer_id`` refused us because this member was removed from the cluster."""

    async def on_call(self, method: str, body: bytes) -> bytes:
        """Answer a forwarded request (raise to report an error to the caller)."""
