"""Public value types returned by the client.

Convention: keys and values are always ``bytes`` (etcd keys are byte strings and may hold any
byte, including NUL); every type offers ``*_str`` helpers that decode UTF-8 for convenience.
Methods that take a key or value accept ``str`` (encoded as UTF-8) or ``bytes``.

All types are small frozen, slotted dataclasses: cheap to build, hashable, safe to share
between threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._enum import NamedIntEnum

__all__ = [
    "Event",
    "EventType",
    "HashKV",
    "KeyValue",
    "LeaseInfo",
    "Member",
    "RangeResult",
    "ServerStatus",
    "TxnResult",
    "WatchResponse",
]


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key at one revision (etcd's ``mvccpb.KeyValue``).

    Attributes:
        key: the key (bytes).
        value: the value (bytes; empty with ``keys_only``).
        create_revision: revision of the key's last creation.
        mod_revision: revision of the key's last modification.
        version: number of puts since creation (1 on creation).
        lease: attached lease ID, 0 for none.
    """

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @property
    def key_str(self) -> str:
        """The key decoded as UTF-8."""
        return self.key.decode()

    @property
    def value_str(self) -> str:
        """The value decoded as UTF-8."""
        return self.value.decode()


class EventType(NamedIntEnum):
    """Kind of a watch event (wire values of ``mvccpb.Event.EventType``); prints its name
    (``PUT``), compares and converts as the int."""

    PUT = 0
    DELETE = 1


@dataclass(frozen=True, slots=True)
class Event:
    """A change seen by a watch.

    Attributes:
        type: PUT or DELETE.
        kv: the key after the change; for DELETE only ``key`` and ``mod_revision`` (the
            deletion revision) are set.
        prev_kv: the key before the change when the watch asked for ``prev_kv`` (else None).
    """

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def key(self) -> bytes:
        """Shortcut for ``kv.key``."""
        return self.kv.key

    @property
    def value(self) -> bytes:
        """Shortcut for ``kv.value``."""
        return self.kv.value

    @property
    def revision(self) -> int:
        """Revision of this change (``kv.mod_revision``)."""
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """One batch delivered by a watch: every event of one or more complete revisions.

    Attributes:
        events: the events, in revision order (empty for a progress notification).
        revision: the revision this batch makes the watch complete up to: the last event's
            revision, or for a progress notification the server's revision (no later event of
            this watch has a revision <= it).
        progress: True for a progress notification (no events).
    """

    events: tuple[Event, ...]
    revision: int
    progress: bool = False


@dataclass(frozen=True, slots=True)
class RangeResult:
    """Result of :meth:`range`.

    Attributes:
        kvs: the keys found (sorted by key unless another ``sort`` was asked).
        more: True when ``limit`` cut the result short.
        count: number of keys in the range (ignores ``limit``).
        revision: the store revision the read was served at.
    """

    kvs: list[KeyValue]
    more: bool
    count: int
    revision: int


class TxnResult(tuple):  # type: ignore[type-arg]
    """Result of a transaction: unpacks as ``(succeeded, results)`` and carries ``revision``.

    ``results`` has one entry per operation of the branch that ran: a ``list[KeyValue]`` for
    :class:`~coord.Get`, the previous :class:`KeyValue` (or None) for :class:`~coord.Put`,
    the number of deleted keys for :class:`~coord.Delete` (a ``list[KeyValue]`` of deleted
    keys with ``prev_kv=True``), and a nested ``TxnResult`` for :class:`~coord.Txn`.
    """

    revision: int

    def __new__(cls, succeeded: bool, results: list[object], revision: int) -> TxnResult:
        self = super().__new__(cls, (succeeded, results))
        self.revision = revision
        return self

    @property
    def succeeded(self) -> bool:
        """True when every compare held and the success branch ran."""
        return bool(self[0])

    @property
    def results(self) -> list[object]:
        """Per-operation results of the branch that ran."""
        return self[1]  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member (``etcdserverpb.Member``)."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """Status of the member that answered (``Maintenance.Status``)."""

    version: str
    db_size: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    errors: tuple[str, ...]
    db_size_in_use: int
    is_learner: bool
    member_id: int
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Result of ``lease_time_to_live``: ``ttl`` is -1 when the lease does not exist."""

    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class HashKV:
    """Result of ``hash_kv``."""

    hash: int
    compact_revision: int
    revision: int
