"""ReadOnly: pending linearizable ReadIndex requests on the leader (ReadOnlySafe mode).

A request records the leader's commit index when it arrived and is keyed by its context.  The
leader then broadcasts a heartbeat carrying the context; once a quorum acknowledged it, the
leader knew it was still leader *after* the request arrived, so any read served at
``applied >= index`` is linearizable.  Requests are answered in arrival order: a quorum ack for
one context also confirms every earlier request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import Message

__all__ = ["ReadIndexStatus", "ReadOnly"]


@dataclass(slots=True)
class ReadIndexStatus:
    req: Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    def __init__(self) -> None:
        # context -> status.  Invariant: keys == set(queue).
        self.pending: dict[bytes, ReadIndexStatus] = {}
        # Contexts in arrival order.
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        """Track a read at commit index ``index``; a duplicate context is ignored."""
        ctx = m.context
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(req=m, index=index)
        self.queue.append(ctx)

    def recv_ack(self, id_: int, ctx: bytes) -> dict[int, bool] | None:
        """Record that ``id_`` acknowledged the heartbeat for ``ctx``; returns the ack set."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(id_)
        return dict.fromkeys(rs.acks, True)

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Pop and return every request up to and including ``ctx``."""
        if ctx not in self.pending:
            return []
        k = self.queue.index(ctx) + 1
        out = [self.pending.pop(c) for c in self.queue[:k]]
        del self.queue[:k]
        return out

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""

    def _check(self) -> None:
        assert set(self.queue) == set(self.pending)
        assert len(self.queue) == len(self.pending)
