"""Cluster membership: the replicated member list (names, peer and client URLs, learners).

Theory of operation
-------------------
Membership is part of the replicated state: every change enters the Raft log and every member
applies it in log order, so all members agree on the list at every index.

* **Bootstrap** (``--initial-cluster-state new``): each member derives every initial member's
  ID from its peer URLs and the cluster token exactly as etcd does
  (:func:`compute_member_id`; the cluster ID from the sorted member IDs: :func:`compute_cluster_id`)
  and writes the same ADD_NODE conf-change entries (term 1, index 1..n, sorted by ID) into its
  own log, so every member starts with byte-identical entries.
* **Conf changes** (MemberAdd/Remove/Promote/Update) carry a :class:`ChangeContext` in
  ``ConfChange.context``: who proposed it (member ID + sequence number, so the proposer can
  resolve its waiting future) and the member record.
* **Attributes**: a member's name and client URLs are published after it starts through a
  normal log entry (etcd's ``publish``), so MemberList shows client URLs on every member.
* IDs of removed members are remembered forever (``removed``): the transport refuses them.

:meth:`Membership.snapshot` / :meth:`Membership.restore` put the list into Raft snapshots
(whose ConfState must name the same members: :meth:`Membership.conf_state_mismatch`);
:meth:`document` is what a joining member receives from :func:`~coord.server.transport.discover`.

Member and cluster IDs are computed as etcd does (computeMemberID: SHA-1 over the sorted peer
URLs, the cluster token and, for a member added at runtime, the time; first 8 bytes
big-endian) so they look like etcd's 64-bit hex IDs.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from coord.server.raft.types import ConfChange, ConfChangeType, ConfState

__all__ = [
    "Attributes",
    "ChangeContext",
    "Member",
    "MemberInfo",
    "Membership",
    "MembershipDocument",
    "bootstrap_members",
    "compute_cluster_id",
    "compute_member_id",
]


@dataclass(frozen=True)
class MemberInfo:
    """One cluster member as MemberList reports it."""

    id: int
    name: str
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False)


def _id_from(data: bytes) -> int:
    return int(struct.unpack(">Q", hashlib.sha1(data).digest()[:8])[0]) or 1


def compute_member_id(
    peer_urls: Sequence[str], cluster_token: str, added_at: int | None = None
) -> int:
    """etcd's member ID (computeMemberID): SHA-1 of the sorted peer URLs, the cluster token
    and, for a member added at runtime, ``added_at`` (unix seconds); first 8 bytes."""
    data = "".join(sorted(peer_urls)) + cluster_token
    if added_at is not None:
        data += str(added_at)
    return _id_from(data.encode())


def compute_cluster_id(member_ids: Sequence[int]) -> int:
    """etcd's cluster ID: SHA-1 of the sorted member IDs (8 bytes big-endian each)."""
    return _id_from(b"".join(struct.pack(">Q", m) for m in sorted(member_ids)))


class Member(msgspec.Struct, array_like=True):
    """One member record (replicated)."""

    id: int
    name: str = ""
    peer_urls: list[str] = []
    client_urls: list[str] = []
    is_learner: bool = False

    def info(self) -> MemberInfo:
        """The API-facing view."""
        return MemberInfo(
            id=self.id,
            name=self.name,
            peer_urls=tuple(self.peer_urls),
            client_urls=tuple(self.client_urls),
            is_learner=self.is_learner,
        )


class ChangeContext(msgspec.Struct, array_like=True):
    """``ConfChange.context``: the proposer's (member, seq) and the member record."""

    proposer: int
    seq: int
    member: Member


class Attributes(msgspec.Struct, array_like=True):
    """A member's self-published attributes (name, client URLs)."""

    id: int
    name: str
    client_urls: list[str]


class MembershipDocument(msgspec.Struct, array_like=True):
    """The serialized membership (snapshots, discovery)."""

    cluster_id: int
    members: list[Member]
    removed: list[int]


_DOC = msgspec.msgpack.Decoder(MembershipDocument)
_CTX = msgspec.msgpack.Decoder(ChangeContext)
_ATTR = msgspec.msgpack.Decoder(Attributes)
_ENC = msgspec.msgpack.Encoder()


def bootstrap_members(initial_cluster: dict[str, list[str]], token: str) -> list[Member]:
    """The initial members of ``--initial-cluster`` with etcd-derived IDs, sorted by ID."""
    members = [
        Member(id=compute_member_id(urls, token), name=name, peer_urls=sorted(urls))
        for name, urls in initial_cluster.items()
    ]
    ids = [m.id for m in members]
    if len(set(ids)) != len(ids):
        raise ValueError("--initial-cluster has duplicate peer URLs")
    return sorted(members, key=lambda m: m.id)


class Membership:
    """The member list as of the last applied index."""

    def __init__(self, cluster_id: int = 0) -> None:
        self.cluster_id = cluster_id
        self.members: dict[int, Member] = {}
        self.removed: set[int] = set()

    @classmethod
    def bootstrap(cls, members: list[Member]) -> Membership:
        """A membership for a new cluster (cluster ID from the member IDs)."""
        ms = cls(compute_cluster_id([m.id for m in members]))
        for m in members:
            ms.members[m.id] = m
        return ms

    # -- queries -------------------------------------------------------------------------------

    def infos(self) -> list[MemberInfo]:
        """All members sorted by ID."""
        return [self.members[k].info() for k in sorted(self.members)]

    def peer_urls(self) -> dict[int, list[str]]:
        """``member id -> peer URLs``."""
        return {k: list(m.peer_urls) for k, m in self.members.items()}

    def find_by_peer_urls(self, urls: list[str]) -> Member | None:
        """The member advertising exactly ``urls`` (order-insensitive)."""
        want = sorted(urls)
        for m in self.members.values():
            if sorted(m.peer_urls) == want:
                return m
        return None

    def peer_url_taken(self, urls: list[str], except_id: int = 0) -> bool:
        """True when any of ``urls`` is already used by another member."""
        return any(
            u in m.peer_urls for m in self.members.values() if m.id != except_id for u in urls
        )

    def conf_state_mismatch(self, cs: ConfState) -> str:
        """Why this member list is not the Raft configuration ``cs`` ("" when it is).

        Both are replicated by the same conf-change entries, so at every applied index the
        members are exactly ``cs``'s voters and learners, with matching learner flags; a
        snapshot whose member list disagrees with its ConfState is refused.
        """
        voters = set(cs.voters) | set(cs.voters_outgoing)
        learners = set(cs.learners) | set(cs.learners_next)
        listed_voters = {k for k, m in self.members.items() if not m.is_learner}
        listed_learners = {k for k, m in self.members.items() if m.is_learner}
        if (listed_voters, listed_learners) == (voters - learners, learners):
            return ""
        return (
            f"members: voters {_ids(listed_voters)}, learners {_ids(listed_learners)}; "
            f"configuration: voters {_ids(voters - learners)}, learners {_ids(learners)}"
        )

    # -- changes (applied in log order) --------------------------------------------------------

    def apply(self, cc: ConfChange) -> Member | None:
        """Apply a committed conf change; returns the affected member record."""
        ctx = decode_context(cc.context) if cc.context else None
        member = ctx.member if ctx is not None else None
        if cc.type == ConfChangeType.REMOVE_NODE:
            self.removed.add(cc.node_id)
            return self.members.pop(cc.node_id, None)
        if cc.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
            learner = cc.type == ConfChangeType.ADD_LEARNER_NODE
            cur = self.members.get(cc.node_id)
            if cur is not None:  # promotion of a learner
                cur.is_learner = learner
                return cur
            new = member or Member(id=cc.node_id)
            new.is_learner = learner
            self.members[cc.node_id] = new
            return new
        if cc.type == ConfChangeType.UPDATE_NODE:
            cur = self.members.get(cc.node_id)
            if cur is not None and member is not None:
                cur.peer_urls = list(member.peer_urls)
            return cur
        return None

    def apply_attributes(self, attrs: Attributes) -> None:
        """A member published its name and client URLs."""
        cur = self.members.get(attrs.id)
        if cur is not None:
            cur.name = attrs.name
            cur.client_urls = list(attrs.client_urls)

    # -- serialization -------------------------------------------------------------------------

    def document(self) -> bytes:
        """Encoded :class:`MembershipDocument`."""
        return _ENC.encode(
            MembershipDocument(
                self.cluster_id,
                [self.members[k] for k in sorted(self.members)],
                sorted(self.removed),
            )
        )

    snapshot = document

    @classmethod
    def from_document(cls, data: bytes) -> Membership:
        """Decode :meth:`document` output."""
        doc = _DOC.decode(data)
        ms = cls(doc.cluster_id)
        ms.members = {m.id: m for m in doc.members}
        ms.removed = set(doc.removed)
        return ms

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's."""
        other = Membership.from_document(data)
        self.cluster_id, self.members, self.removed = (
            other.cluster_id,
            other.members,
            other.removed,
        )

    def _check(self) -> None:
        assert not (set(self.members) & self.removed), "a removed member is still listed"
        for k, m in self.members.items():
            assert k == m.id


def _ids(ids: set[int]) -> str:
    return "[" + ",".join(f"{i:x}" for i in sorted(ids)) + "]"


def encode_context(ctx: ChangeContext) -> bytes:
    """Encode a conf-change context."""
    return _ENC.encode(ctx)


def decode_context(data: bytes) -> ChangeContext:
    """Decode a conf-change context."""
    return _CTX.decode(data)


def encode_attributes(attrs: Attributes) -> bytes:
    """Encode published attributes."""
    return _ENC.encode(attrs)


def decode_attributes(data: bytes) -> Attributes:
    """Decode published attributes."""
    return _ATTR.decode(data)
