"""etcd's backend layout: a coord state written as an etcd 3.4 bbolt db, and read back from one.

Theory of operation
-------------------
An etcd snapshot is its backend database (a bbolt file, :mod:`.bbolt`) followed by a SHA-256
(:mod:`.snapshotfile`). The backend holds ten top-level buckets; this module maps each to
coord's state machine (../shared/reference/etcd-snapshot-format.md §2; etcd v3.4.23
``mvcc/kvstore.go``, ``lease/lessor.go``, ``auth/store.go``, ``etcdserver/api/membership``):

* ``key``: the MVCC history, one entry per change: the 17-byte revision ``main`` BE,
  ``'_'``, ``sub`` BE (the change's position in its revision), plus ``'t'`` for a tombstone;
  the value an ``mvccpb.KeyValue`` (a tombstone's holds only the key). coord's store keeps the
  same history (:meth:`KVStore.history`: everything still needed, down to the compaction),
  so the mapping is one to one in both directions;
* ``meta``: ``consistent_index`` (the Raft index applied), and the compaction revision as
  ``finishedCompactRev``/``scheduledCompactRev`` (17-byte revisions);
* ``lease``: 8-byte BE id -> ``leasepb.Lease{ID, TTL, RemainingTTL}``;
* ``auth``/``authUsers``/``authRoles``: the enabled flag and auth revision, ``authpb.User``
  (bcrypt hash, sorted roles, options) and ``authpb.Role`` (permissions); the built-in root
  role is not stored, as in etcd;
* ``alarm``: ``AlarmMember`` keys with empty values;
* ``members``/``members_removed``/``cluster``: etcd's member JSON, ``removed``, the cluster
  version. etcd 3.4 never reads them back (membership comes from the WAL), and neither does a
  restore here: the restored cluster's members are those of its ``--initial-cluster``.

Reading rebuilds a :class:`StateMachine` (the current revision is ``max(last main,
compacted)`` as in etcd's ``restore``; a scheduled but unfinished compaction is run, as etcd
does at start). Anything that does not decode is a :class:`SnapshotFormatError` naming the
bucket and key: a restore from it writes nothing.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import betterproto2

from coord._pb import authpb
from coord._protowire import (
    LEN,
    VARINT,
    bytes_field,
    decode_varint,
    decode_varint_checked,
    int_field,
    to_int64,
)
from coord.server.auth.store import AuthStore, Role, User
from coord.server.membership import MemberInfo
from coord.server.mvcc import KeyVersion, KVStore
from coord.server.mvcc.snapshotformat import SnapshotChange
from coord.server.mvcc.snapshotformat import encode_snapshot as encode_kv_snapshot
from coord.server.statemachine import StateMachine
from coord.server.statemachine import encode_snapshot as encode_state

from . import bbolt

__all__ = [
    "BUCKETS",
    "CLUSTER_VERSION",
    "Backend",
    "Capture",
    "SnapshotFormatError",
    "capture",
    "read_backend",
    "write_backend",
]

#: The etcd version coord speaks (Maintenance.Status reports it), which a snapshot's
#: ``cluster`` bucket records as the cluster version.
CLUSTER_VERSION = "3.5.0"
#: etcd 3.4's buckets, in bbolt's (bytewise) order.
BUCKETS = (
    b"alarm",
    b"auth",
    b"authRoles",
    b"authUsers",
    b"cluster",
    b"key",
    b"lease",
    b"members",
    b"members_removed",
    b"meta",
)
_REV = struct.Struct(">qcq")  # main, '_', sub
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_TOMBSTONE = b"t"
M = TypeVar("M", bound=betterproto2.Message)
#: called with the number of key-bucket entries written or read so far
Progress = Callable[[int], None]


class SnapshotFormatError(ValueError):
    """A backend db whose content is not etcd's (the message names the bucket and key)."""


@dataclass(frozen=True)
class Capture:
    """A state machine's content as of one moment, to be written as a db later (elsewhere).

    Taking it is cheap (references to the store's history, which writes only append to and
    compaction replaces rather than changes, plus the small buckets encoded at once), so it
    is taken in the event loop between two applies and written from a worker thread.
    """

    history: list[tuple[int, list[KeyVersion]]]
    #: every bucket but ``key``, encoded and sorted
    buckets: dict[bytes, list[tuple[bytes, bytes]]]


def capture(
    sm: StateMachine,
    members: Iterable[MemberInfo],
    removed: Iterable[int],
    cluster_version: str,
) -> Capture:
    """Capture ``sm`` (applied up to ``sm.applied_index``) and the member list."""
    auth = sm.auth
    compact = sm.kv.compact_rev
    return Capture(
        list(sm.kv.history()),
        {
            b"alarm": sorted((_alarm_member(m, a), b"") for m, a in sm.alarms),
            b"auth": [
                (b"authEnabled", b"\x01" if auth.enabled else b"\x00"),
                (b"authRevision", _U64.pack(max(auth.revision, 1))),
            ],
            b"authRoles": [(n.encode(), _role(n, r)) for n, r in sorted(auth.roles.items())],
            b"authUsers": [(n.encode(), _user(n, u)) for n, u in sorted(auth.users.items())],
            b"cluster": [(b"clusterVersion", cluster_version.encode())],
            b"lease": sorted(
                (_I64.pack(i), int_field(1, i) + int_field(2, ttl) + int_field(3, left))
                for i, ttl, left in sm.lessor.snapshot()
            ),
            b"members": sorted((f"{m.id:x}".encode(), _member_json(m)) for m in members),
            b"members_removed": sorted((f"{i:x}".encode(), b"removed") for i in removed),
            b"meta": [(b"consistent_index", _U64.pack(sm.applied_index))]
            + (
                [
                    (b"finishedCompactRev", _REV.pack(compact, b"_", 0)),
                    (b"scheduledCompactRev", _REV.pack(compact, b"_", 0)),
                ]
                if compact
                else []
            ),
        },
    )


def write_backend(f: BinaryIO, cap: Capture, progress: Progress | None = None) -> int:
    """Write ``cap`` as an etcd backend db to ``f``; returns the db's size in bytes."""
    w = bbolt.Writer(f)
    for name in BUCKETS:
        w.bucket(name, _key_items(cap.history, progress) if name == b"key" else cap.buckets[name])
    return w.close()


def _key_items(
    history: list[tuple[int, list[KeyVersion]]], progress: Progress | None
) -> Iterator[tuple[bytes, bytes]]:
    pack = _REV.pack
    n = 0
    for rev, changes in history:
        for sub, v in enumerate(changes):
            kvf = v.kvf
            if v.version == 0:  # a tombstone: etcd stores KeyValue{key} alone
                yield pack(rev, b"_", sub) + _TOMBSTONE, bytes_field(1, v.key)
            else:  # kvf is the KeyValue as field 2: a tag byte and a length before it
                start = 2 if kvf[1] < 0x80 else decode_varint_checked(kvf, 1, len(kvf))[1]
                yield pack(rev, b"_", sub), kvf[start:]
        n += len(changes)
        if progress is not None and n >= 4096:
            progress(n)
            n = 0
    if progress is not None and n:
        progress(n)


def _alarm_member(member_id: int, alarm: int) -> bytes:
    return int_field(1, member_id) + int_field(2, alarm)


def _user(name: str, u: User) -> bytes:
    return bytes(
        authpb.User(
            name=name.encode(),
            password=u.password,
            roles=list(u.roles),
            options=authpb.UserAddOptions(no_password=u.no_password),
        )
    )


def _role(name: str, r: Role) -> bytes:
    perms = [
        authpb.Permission(perm_type=authpb.PermissionType(t), key=k, range_end=e)
        for t, k, e in r.perms
    ]
    return bytes(authpb.Role(name=name.encode(), key_permission=perms))


def _member_json(m: MemberInfo) -> bytes:
    """etcd's ``json.Marshal(Member)``: id, peerURLs, then the fields that are set."""
    doc: dict[str, object] = {"id": m.id, "peerURLs": list(m.peer_urls)}
    if m.is_learner:
        doc["isLearner"] = True
    if m.name:
        doc["name"] = m.name
    if m.client_urls:
        doc["clientURLs"] = list(m.client_urls)
    return json.dumps(doc, separators=(",", ":")).encode()


# -- reading ------------------------------------------------------------------------------------


@dataclass
class Backend:
    """What a backend db holds, as the parts of a coord state-machine snapshot."""

    #: ``KVStore.snapshot()`` bytes of the history
    kv: bytes
    revision: int
    #: live keys at ``revision``
    keys: int
    leases: list[list[int]]
    alarms: list[tuple[int, int]]
    #: ``AuthStore.snapshot()`` bytes
    auth: bytes
    #: ``meta/consistent_index`` (0 when absent)
    consistent_index: int

    def state(self, applied_index: int) -> bytes:
        """``StateMachine.snapshot()`` bytes of this content, applied up to ``applied_index``."""
        return encode_state(self.kv, self.leases, self.alarms, applied_index, self.auth)


def read_backend(db: bbolt.Reader, progress: Progress | None = None) -> Backend:
    """The coord state of an etcd (or coord) backend db (SnapshotFormatError if it is not
    one); ``progress`` hears the ``key`` entries read."""
    names = set(db.buckets())
    meta = dict(db.items(b"meta")) if b"meta" in names else {}
    compact, scheduled = (
        _rev_main(meta[k], "meta", k) if k in meta else 0
        for k in (b"finishedCompactRev", b"scheduledCompactRev")
    )
    live: dict[bytes, bool] = {}
    history = list(_read_history(db, live, progress)) if b"key" in names else []
    rev = max(history[-1][0] if history else 1, compact, 1)
    kv = encode_kv_snapshot(rev, compact, history)
    del history  # the decoded entries: one copy of the history in memory at a time
    keys = sum(live.values())
    if scheduled > compact:  # etcd resumes an unfinished compaction at start
        store = KVStore.restore(kv)
        store.compact(scheduled)
        kv = store.snapshot()
    auth = AuthStore()
    if b"auth" in names:
        flags = dict(db.items(b"auth"))
        revision = flags.get(b"authRevision")
        auth.replace(
            flags.get(b"authEnabled") == b"\x01",
            _u64(revision, "auth", b"authRevision") if revision is not None else 0,
            dict(_read_users(db)) if b"authUsers" in names else {},
            dict(_read_roles(db)) if b"authRoles" in names else {},
        )
    index = meta.get(b"consistent_index")
    return Backend(
        kv=kv,
        revision=rev,
        keys=keys,
        leases=[_lease(k, v) for k, v in db.items(b"lease")] if b"lease" in names else [],
        alarms=sorted({_alarm(k) for k, _ in db.items(b"alarm")}) if b"alarm" in names else [],
        auth=auth.snapshot(),
        consistent_index=_u64(index, "meta", b"consistent_index") if index is not None else 0,
    )


def _read_history(
    db: bbolt.Reader, live: dict[bytes, bool], progress: Progress | None
) -> Iterator[tuple[int, list[SnapshotChange]]]:
    """The ``key`` bucket as snapshot changes by revision; ``live`` learns each key's state."""
    cur = 0
    changes: list[SnapshotChange] = []
    n = 0
    unpack = _REV.unpack_from
    for rkey, value in db.items(b"key"):
        size = len(rkey)
        if size not in (17, 18) or rkey[8] != 0x5F or (size == 18 and rkey[17] != 0x74):
            raise SnapshotFormatError(f"bucket key: {rkey!r} is not a revision")
        main = unpack(rkey)[0]
        if main < 1:
            raise SnapshotFormatError(f"bucket key: revision {main} is below 1")
        key, create, version, val, lease = _key_value(value, rkey)
        if main != cur:
            if changes:
                yield cur, changes
            cur, changes = main, []
        if size == 18:
            changes.append((key, 0, 0, b"", 0))
            live[key] = False
        elif version < 1 or not 0 < create <= main:
            raise SnapshotFormatError(
                f"bucket key: entry {rkey.hex()}: version {version}, create revision {create}"
            )
        else:
            changes.append((key, create, version, val, lease))
            live[key] = True
        n += 1
        if progress is not None and n == 4096:
            progress(n)
            n = 0
    if changes:
        yield cur, changes
    if progress is not None and n:
        progress(n)


def _key_value(data: bytes, rkey: bytes) -> SnapshotChange:
    """An ``mvccpb.KeyValue``: (key, create_revision, version, value, lease). The hot loop of
    a restore (one call per history entry), so varints of one byte are read inline."""
    key = value = b""
    create = version = lease = 0
    pos, end = 0, len(data)
    try:
        while pos < end:
            t = data[pos]
            v = data[pos + 1]
            if v < 0x80:
                pos += 2
            elif data[pos + 2] < 0x80:  # two bytes: revisions up to 16383, lengths
                v = (v & 0x7F) | data[pos + 2] << 7
                pos += 3
            else:
                v, pos = decode_varint(data, pos + 1)
            if t == 0x0A:  # 1 key
                key = data[pos : pos + v]
                pos += v
            elif t == 0x2A:  # 5 value
                value = data[pos : pos + v]
                pos += v
            elif t == 0x10:  # 2 create_revision
                create = v
            elif t == 0x20:  # 4 version
                version = v
            elif t == 0x30:  # 6 lease
                lease = to_int64(v)
            elif t != 0x18:  # 3 mod_revision: the entry's own revision
                raise ValueError(f"unexpected field tag {t:#x}")
        if pos > end:
            raise ValueError("a field runs past the end")
    except (IndexError, ValueError) as e:
        why = e if isinstance(e, ValueError) else "truncated"
        raise SnapshotFormatError(f"bucket key: {rkey.hex()}: not a KeyValue: {why}") from None
    if not key:
        raise SnapshotFormatError(f"bucket key: entry {rkey.hex()} has no key")
    return key, create, version, value, lease


def _fields(data: bytes, bucket: str, key: bytes) -> dict[int, int | bytes]:
    """A protobuf message's varint and bytes fields by number (last one wins, unknown kept)."""
    out: dict[int, int | bytes] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            t, pos = decode_varint_checked(data, pos, end)
            num, wire = t >> 3, t & 7
            if wire == VARINT:
                out[num], pos = decode_varint_checked(data, pos, end)
            elif wire == LEN:
                n, pos = decode_varint_checked(data, pos, end)
                if pos + n > end:
                    raise ValueError(f"field {num} runs past the end")
                out[num], pos = data[pos : pos + n], pos + n
            else:
                raise ValueError(f"unexpected wire type {wire} of field {num}")
    except ValueError as e:
        raise SnapshotFormatError(f"bucket {bucket}: {key!r}: not a protobuf message: {e}") from e
    return out


def _int(v: int | bytes) -> int:
    if isinstance(v, bytes):
        raise SnapshotFormatError("a bytes field where an integer belongs")
    return to_int64(v)


def _u64(v: bytes, bucket: str, key: bytes) -> int:
    if len(v) != 8:
        raise SnapshotFormatError(f"bucket {bucket}: {key.decode()} is {len(v)} bytes, not 8")
    return int(_U64.unpack(v)[0])


def _rev_main(v: bytes, bucket: str, key: bytes) -> int:
    if len(v) != 17 or v[8:9] != b"_":
        raise SnapshotFormatError(f"bucket {bucket}: {key.decode()} is not a revision")
    return int(_REV.unpack(v)[0])


def _lease(key: bytes, value: bytes) -> list[int]:
    f = _fields(value, "lease", key)
    lease_id, ttl = _int(f.get(1, 0)), _int(f.get(2, 0))
    if not lease_id or ttl <= 0:
        raise SnapshotFormatError(f"bucket lease: {key.hex()}: lease {lease_id} with TTL {ttl}")
    left = _int(f.get(3, 0))
    return [lease_id, ttl, left if 0 < left < ttl else 0]


def _alarm(key: bytes) -> tuple[int, int]:
    f = _fields(key, "alarm", key)
    return _int(f.get(1, 0)) & (2**64 - 1), _int(f.get(2, 0))


def _parse(cls: type[M], bucket: str, key: bytes, value: bytes) -> M:
    try:
        return cls.parse(value)
    except Exception as e:  # betterproto2 raises several kinds for bad input
        raise SnapshotFormatError(f"bucket {bucket}: {key!r}: {e}") from e


def _read_users(db: bbolt.Reader) -> Iterator[tuple[str, User]]:
    for key, value in db.items(b"authUsers"):
        u = _parse(authpb.User, "authUsers", key, value)
        no_password = bool(u.options and u.options.no_password)
        yield u.name.decode(), User(u.password, sorted(set(u.roles)), no_password)


def _read_roles(db: bbolt.Reader) -> Iterator[tuple[str, Role]]:
    for key, value in db.items(b"authRoles"):
        r = _parse(authpb.Role, "authRoles", key, value)
        # one permission per range (the last wins, as RoleGrantPermission does), by range
        ranges = {(p.key, p.range_end): int(p.perm_type) for p in r.key_permission}
        yield r.name.decode(), Role([(t, k, e) for (k, e), t in sorted(ranges.items())])
