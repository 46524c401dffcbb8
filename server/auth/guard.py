"""Who is calling, and may they: the one place every request's permissions are checked.

Theory of operation: every gRPC handler (and so the JSON gateway, which runs the same handlers
in-process) calls :meth:`Guard.authorize` with its method path and request bytes before doing
anything, except Watch, which opens for anyone (as etcd's) and calls
:meth:`Guard.authorize_watch` for each watch it creates. While auth
is disabled that is one attribute test. While enabled, the caller is named by the ``token``
(or ``authorization``) metadata, else, with ``--client-cert-auth``, by the Common Name of its
TLS certificate (a token wins over a certificate, as in etcd); neither gives
``etcdserver: user name is empty``. Users holding role ``root`` may do anything. Others are
checked against :data:`RULES`, etcd's (server/etcdserver/apply_auth.go, v3_server.go):

* Range: read on ``[key, range_end)``; Put: write on the key (and read with ``prev_kv``);
  DeleteRange: write on the range (and read with ``prev_kv``); Txn: read for every compare,
  and each op as above, nested txns included; Watch: read on the watched range.
* LeaseRevoke: write on every key attached to the lease; TimeToLive with ``keys``: read on
  each of them (etcd 3.5). LeaseGrant, KeepAlive, TimeToLive, Leases and Alarm GET: any
  authenticated user.
* Compaction, Defragment, Snapshot, Hash, HashKV, Alarm changes, MoveLeader, Downgrade,
  Member{Add,Remove,Update,Promote} and auth management: root only; UserGet of oneself and
  RoleGet of one's own role are allowed. (etcd 3.4 does not check Compaction at all; coord
  does, since a compaction destroys history every reader shares.)
* MemberList, Status, Authenticate and AuthStatus need no identity (etcd 3.4).
* Defragment, Snapshot, Hash and HashKV refuse as etcd 3.4's maintenance server does: its
  auth errors unconverted, ``auth: permission denied`` with code Unknown (etcdctl prints that).

Key ranges use etcd's interval rules (:mod:`.perms`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from coord._pb import etcdserverpb as pb
from coord.errors import CoordError, PermissionDeniedError, UserEmptyError
from coord.server.pbdecode import parse_message

from .store import AuthStore
from .tokens import TokenProvider

__all__ = ["RULES", "Guard"]


def _cert_common_name(stream: Any) -> str | None:
    peer = getattr(stream, "peer", None)
    cert = peer.cert() if peer is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


def _txn_ranges(req: pb.TxnRequest) -> Iterable[tuple[bytes, bytes, bool]]:
    """(key, range_end, write) for everything a txn reads or writes, nested txns included."""
    for cmp in req.compare:
        yield cmp.key, cmp.range_end, False
    for op in (*req.success, *req.failure):
        if op.request_range is not None:
            yield op.request_range.key, op.request_range.range_end, False
        elif op.request_put is not None:
            yield op.request_put.key, b"", True
            if op.request_put.prev_kv:
                yield op.request_put.key, b"", False
        elif op.request_delete_range is not None:
            d = op.request_delete_range
            yield d.key, d.range_end, True
            if d.prev_kv:
                yield d.key, d.range_end, False
        elif op.request_txn is not None:
            yield from _txn_ranges(op.request_txn)


class Guard:
    """Authentication and permission checks (see the module docstring)."""

    def __init__(
        self,
        store: AuthStore,
        tokens: TokenProvider,
        client_cert_auth: bool,
        lease_keys: Callable[[int], Iterable[bytes]],
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.client_cert_auth = client_cert_auth
        self.lease_keys = lease_keys

    # -- identity ------------------------------------------------------------------------
    def user(self, stream: Any) -> str:
        """The caller's user name (UserEmptyError / InvalidAuthTokenError if none)."""
        md = stream.metadata
        token = md.get("token") or md.get("authorization") if md is not None else None
        if token:
            return self.tokens.user(token, self.store.revision)
        if self.client_cert_auth:
            cn = _cert_common_name(stream)
            if cn:
                return cn
        raise UserEmptyError()

    # -- checks ----------------------------------------------------------------------------
    def authorize(self, stream: Any, path: str, data: bytes) -> None:
        """Raise the etcd error that ``path`` with request ``data`` deserves from this caller,
        if any (nothing while auth is disabled)."""
        if not self.store.enabled:
            return
        rule = RULES.get(path, _root_only)
        if rule is None:
            return
        try:
            name = self.user(stream)
            if not self.store.is_root(name):
                rule(self, name, data)
        except CoordError as e:
            if path in _RAW_ERRORS:
                raise CoordError("auth: " + e.message.removeprefix("etcdserver: ")) from None
            raise

    def authorize_watch(self, stream: Any, key: bytes, range_end: bytes) -> None:
        """A watch on ``[key, range_end)`` needs read permission on it."""
        if not self.store.enabled:
            return
        name = self.user(stream)
        if not self.store.is_root(name):
            self.require(name, [(key, range_end, False)])

    def require(self, name: str, ranges: Iterable[tuple[bytes, bytes, bool]]) -> None:
        """PermissionDeniedError unless ``name`` may read/write every (key, range_end)."""
        perms = self.store.perms(name)
        if perms is None:
            raise PermissionDeniedError()
        for key, range_end, write in ranges:
            if not perms.allowed(key, range_end, write):
                raise PermissionDeniedError()


Rule = Callable[[Guard, str, bytes], None] | None


def _root_only(guard: Guard, name: str, data: bytes) -> None:
    raise PermissionDeniedError()


def _authenticated(guard: Guard, name: str, data: bytes) -> None:
    """Any user the guard could name."""


def _range(guard: Guard, name: str, data: bytes) -> None:
    r = parse_message(pb.RangeRequest, data)
    guard.require(name, [(r.key, r.range_end, False)])


def _put(guard: Guard, name: str, data: bytes) -> None:
    r = parse_message(pb.PutRequest, data)
    guard.require(name, [(r.key, b"", True), *([(r.key, b"", False)] if r.prev_kv else [])])


def _delete_range(guard: Guard, name: str, data: bytes) -> None:
    r = parse_message(pb.DeleteRangeRequest, data)
    reads = [(r.key, r.range_end, False)] if r.prev_kv else []
    guard.require(name, [(r.key, r.range_end, True), *reads])


def _txn(guard: Guard, name: str, data: bytes) -> None:
    guard.require(name, _txn_ranges(parse_message(pb.TxnRequest, data)))


def _lease_revoke(guard: Guard, name: str, data: bytes) -> None:
    lease_id = parse_message(pb.LeaseRevokeRequest, data).id
    guard.require(name, [(k, b"", True) for k in guard.lease_keys(lease_id)])


def _time_to_live(guard: Guard, name: str, data: bytes) -> None:
    req = parse_message(pb.LeaseTimeToLiveRequest, data)
    if req.keys:
        guard.require(name, [(k, b"", False) for k in guard.lease_keys(req.id)])


def _alarm(guard: Guard, name: str, data: bytes) -> None:
    if parse_message(pb.AlarmRequest, data).action != pb.AlarmRequestAlarmAction.GET:
        raise PermissionDeniedError()


def _user_get(guard: Guard, name: str, data: bytes) -> None:
    if parse_message(pb.AuthUserGetRequest, data).name != name:
        raise PermissionDeniedError()


def _role_get(guard: Guard, name: str, data: bytes) -> None:
    user = guard.store.users.get(name)
    if user is None or parse_message(pb.AuthRoleGetRequest, data).role not in user.roles:
        raise PermissionDeniedError()


_KV = "/etcdserverpb.KV/"
_LEASE = "/etcdserverpb.Lease/"
_AUTH = "/etcdserverpb.Auth/"
_MAINT = "/etcdserverpb.Maintenance/"

#: Methods whose refusals carry etcd 3.4's raw auth errors (code Unknown, "auth: ...").
_RAW_ERRORS = frozenset(_MAINT + m for m in ("Defragment", "Snapshot", "Hash", "HashKV"))

#: gRPC path -> its check for a non-root caller; None: no identity needed; absent: root only.
RULES: dict[str, Rule] = {
    _KV + "Range": _range,
    _KV + "Put": _put,
    _KV + "DeleteRange": _delete_range,
    _KV + "Txn": _txn,
    _LEASE + "LeaseRevoke": _lease_revoke,
    _LEASE + "LeaseGrant": _authenticated,
    _LEASE + "LeaseKeepAlive": _authenticated,
    _LEASE + "LeaseTimeToLive": _time_to_live,
    _LEASE + "LeaseLeases": _authenticated,
    _MAINT + "Status": None,
    _MAINT + "Alarm": _alarm,
    "/etcdserverpb.Cluster/MemberList": None,
    _AUTH + "Authenticate": None,
    _AUTH + "AuthStatus": None,
    _AUTH + "UserGet": _user_get,
    _AUTH + "RoleGet": _role_get,
}
