"""The replicated auth state: users, roles, their permissions, and whether auth is enabled.

Theory of operation: like the Lessor, the AuthStore is state-machine state, changed only by
applied ``Kind.AUTH`` commands, identical on every member and part of snapshots. A command's
payload is one :class:`Op` byte followed by the etcd request's protobuf bytes, exactly as the
client sent them except that the proposer has already replaced a password by its bcrypt hash
(``hashed_password``; etcd hashes outside the apply path too, so the log never holds a
password). A login (``Op.AUTHENTICATE``) carries the user name, the token the proposer chose
and the auth revision its password check saw: every member's token keeper learns the token
when it is applied (etcd's simple tokens), and a login whose revision is stale is refused
(``AuthOldRevisionError``). Every successful change bumps ``revision`` (etcd's auth revision),
which invalidates the tokens issued before it. Applying is a pure function of the state and
the command; errors are etcd's, raised as :class:`coord.errors.CoordError` subclasses.

Invariants (``_check``): while enabled, user ``root`` exists and holds role ``root``; every
role a user holds exists (``root`` needs no RoleAdd, as in etcd); role permissions are sorted
by (key, range_end) without duplicates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import msgspec

from coord._pb import authpb
from coord._pb import etcdserverpb as pb
from coord.errors import (
    AuthNotEnabledError,
    AuthOldRevisionError,
    InvalidAuthMgmtError,
    PermissionNotGivenError,
    PermissionNotGrantedError,
    RoleAlreadyExistError,
    RoleEmptyError,
    RoleNotFoundError,
    RoleNotGrantedError,
    RootRoleNotExistError,
    RootUserNotExistError,
    UserAlreadyExistError,
    UserEmptyError,
    UserNotFoundError,
)

from .perms import KeyPermissions

__all__ = ["ROOT", "AuthStore", "Op", "Role", "User", "login_payload"]

ROOT = "root"


class Op(IntEnum):
    """The first byte of a ``Kind.AUTH`` payload: which etcd request follows."""

    ENABLE = 1
    DISABLE = 2
    USER_ADD = 3  #: AuthUserAddRequest with hashed_password (or no_password)
    USER_DELETE = 4
    USER_CHANGE_PASSWORD = 5  #: AuthUserChangePasswordRequest with hashed_password
    USER_GRANT_ROLE = 6
    USER_REVOKE_ROLE = 7
    ROLE_ADD = 8
    ROLE_DELETE = 9
    ROLE_GRANT_PERMISSION = 10
    ROLE_REVOKE_PERMISSION = 11
    AUTHENTICATE = 12  #: msgpack [name, token, auth revision]


@dataclass
class User:
    password: bytes  # bcrypt hash, b"" with no_password
    roles: list[str] = field(default_factory=list)  # sorted
    no_password: bool = False


@dataclass
class Role:
    perms: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # sorted (type, key, end)


class _Snapshot(msgspec.Struct, array_like=True):
    enabled: bool
    revision: int
    users: list[tuple[str, bytes, list[str], bool]]
    roles: list[tuple[str, list[tuple[int, bytes, bytes]]]]


def login_payload(name: str, token: str, revision: int) -> bytes:
    """The ``Op.AUTHENTICATE`` payload (after its op byte)."""
    return msgspec.msgpack.encode([name, token, revision])


LoginListener = Callable[[str, str, int], None]


def _valid_range(key: bytes, range_end: bytes) -> bool:
    """etcd 3.5's isValidPermissionRange: a key, and an end that is empty, ``\\0`` or past it."""
    return bool(key) and (not range_end or range_end == b"\x00" or key < range_end)


class AuthStore:
    """Users and roles (replicated); ``perms(user)`` gives a user's merged permissions."""

    def __init__(self) -> None:
        self.enabled = False
        self.revision = 0
        self.users: dict[str, User] = {}
        self.roles: dict[str, Role] = {}
        self._perm_cache: dict[str, KeyPermissions] = {}
        self._on_login: list[LoginListener] = []
        self._apply: dict[Op, Callable[[bytes], bytes]] = {
            Op.ENABLE: self._enable,
            Op.DISABLE: self._disable,
            Op.USER_ADD: self._user_add,
            Op.USER_DELETE: self._user_delete,
            Op.USER_CHANGE_PASSWORD: self._user_change_password,
            Op.USER_GRANT_ROLE: self._user_grant_role,
            Op.USER_REVOKE_ROLE: self._user_revoke_role,
            Op.ROLE_ADD: self._role_add,
            Op.ROLE_DELETE: self._role_delete,
            Op.ROLE_GRANT_PERMISSION: self._role_grant_permission,
            Op.ROLE_REVOKE_PERMISSION: self._role_revoke_permission,
            Op.AUTHENTICATE: self._authenticate,
        }

    def add_login_listener(self, cb: LoginListener) -> None:
        """Call ``cb(name, token, revision)`` after each applied login."""
        self._on_login.append(cb)

    # -- apply ---------------------------------------------------------------------------
    def apply(self, payload: bytes) -> bytes:
        """Apply one ``Kind.AUTH`` payload; returns the response body (CoordError on failure)."""
        op = Op(payload[0])
        body = self._apply[op](payload[1:])
        if op != Op.AUTHENTICATE:
            self.revision += 1
            self._perm_cache.clear()
        return body

    def _enable(self, _payload: bytes) -> bytes:
        root = self.users.get(ROOT)
        if root is None:
            raise RootUserNotExistError()
        if ROOT not in root.roles:
            raise RootRoleNotExistError()
        self.enabled = True
        return b""

    def _disable(self, _payload: bytes) -> bytes:
        self.enabled = False
        return b""

    def _user_add(self, payload: bytes) -> bytes:
        req = pb.AuthUserAddRequest.parse(payload)
        if not req.name:
            raise UserEmptyError()
        if req.name in self.users:
            raise UserAlreadyExistError()
        no_password = req.options is not None and req.options.no_password
        hashed = b"" if no_password else req.hashed_password.encode()
        self.users[req.name] = User(hashed, [], no_password)
        return b""

    def _user(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise UserNotFoundError()
        return user

    def _user_delete(self, payload: bytes) -> bytes:
        name = pb.AuthUserDeleteRequest.parse(payload).name
        if self.enabled and name == ROOT:
            raise InvalidAuthMgmtError()
        self._user(name)
        del self.users[name]
        return b""

    def _user_change_password(self, payload: bytes) -> bytes:
        req = pb.AuthUserChangePasswordRequest.parse(payload)
        user = self._user(req.name)
        user.password = req.hashed_password.encode()
        user.no_password = False
        return b""

    def _user_grant_role(self, payload: bytes) -> bytes:
        req = pb.AuthUserGrantRoleRequest.parse(payload)
        user = self._user(req.user)
        if req.role != ROOT and req.role not in self.roles:
            raise RoleNotFoundError()
        if req.role not in user.roles:
            user.roles = sorted([*user.roles, req.role])
        return b""

    def _user_revoke_role(self, payload: bytes) -> bytes:
        req = pb.AuthUserRevokeRoleRequest.parse(payload)
        if self.enabled and req.name == ROOT and req.role == ROOT:
            raise InvalidAuthMgmtError()
        user = self._user(req.name)
        if req.role not in user.roles:
            raise RoleNotGrantedError()
        user.roles.remove(req.role)
        return b""

    def _role_add(self, payload: bytes) -> bytes:
        name = pb.AuthRoleAddRequest.parse(payload).name
        if not name:
            raise RoleEmptyError()
        if name in self.roles:
            raise RoleAlreadyExistError()
        self.roles[name] = Role()
        return b""

    def _role(self, name: str) -> Role:
        role = self.roles.get(name)
        if role is None:
            raise RoleNotFoundError()
        return role

    def _role_delete(self, payload: bytes) -> bytes:
        name = pb.AuthRoleDeleteRequest.parse(payload).role
        if self.enabled and name == ROOT:
            raise InvalidAuthMgmtError()
        self._role(name)
        del self.roles[name]
        for user in self.users.values():
            if name in user.roles:
                user.roles.remove(name)
        return b""

    def _role_grant_permission(self, payload: bytes) -> bytes:
        req = pb.AuthRoleGrantPermissionRequest.parse(payload)
        role = self._role(req.name)
        if req.perm is None:
            raise PermissionNotGivenError()
        key, end = req.perm.key, req.perm.range_end
        if not _valid_range(key, end):
            raise InvalidAuthMgmtError()
        # a grant on the same range replaces its type (etcd's RoleGrantPermission)
        perms = [p for p in role.perms if (p[1], p[2]) != (key, end)]
        perms.append((int(req.perm.perm_type), key, end))
        role.perms = sorted(perms, key=lambda p: (p[1], p[2]))
        return b""

    def _role_revoke_permission(self, payload: bytes) -> bytes:
        req = pb.AuthRoleRevokePermissionRequest.parse(payload)
        role = self._role(req.role)
        kept = [p for p in role.perms if (p[1], p[2]) != (req.key, req.range_end)]
        if len(kept) == len(role.perms):
            raise PermissionNotGrantedError()
        role.perms = kept
        return b""

    def _authenticate(self, payload: bytes) -> bytes:
        name, token, revision = msgspec.msgpack.decode(payload, type=tuple[str, str, int])
        if not self.enabled:
            raise AuthNotEnabledError()
        if revision != self.revision:
            raise AuthOldRevisionError()
        self._user(name)
        for cb in self._on_login:
            cb(name, token, revision)
        return bytes(pb.AuthenticateResponse(token=token))

    # -- reads -----------------------------------------------------------------------------
    def is_root(self, name: str) -> bool:
        """True if user ``name`` exists and holds the root role."""
        user = self.users.get(name)
        return user is not None and ROOT in user.roles

    def perms(self, name: str) -> KeyPermissions | None:
        """The merged key permissions of user ``name``'s roles, None for an unknown user."""
        cached = self._perm_cache.get(name)
        if cached is not None:
            return cached
        user = self.users.get(name)
        if user is None:
            return None
        merged = KeyPermissions.build(
            p for r in user.roles if r in self.roles for p in self.roles[r].perms
        )
        self._perm_cache[name] = merged
        return merged

    def role_permissions(self, name: str) -> list[authpb.Permission]:
        """RoleGet's answer (RoleNotFoundError for an unknown role)."""
        return [
            authpb.Permission(perm_type=authpb.PermissionType(t), key=k, range_end=e)
            for t, k, e in self._role(name).perms
        ]

    def user_roles(self, name: str) -> list[str]:
        """UserGet's answer (UserNotFoundError for an unknown user)."""
        return list(self._user(name).roles)

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The whole auth state as bytes."""
        return msgspec.msgpack.encode(
            _Snapshot(
                self.enabled,
                self.revision,
                [(n, u.password, u.roles, u.no_password) for n, u in sorted(self.users.items())],
                [(n, r.perms) for n, r in sorted(self.roles.items())],
            )
        )

    def restore(self, data: bytes) -> None:
        """Replace the state with :meth:`snapshot`'s bytes (b"": the empty, disabled state)."""
        if not data:
            self.replace(False, 0, {}, {})
            return
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        self.replace(
            snap.enabled,
            snap.revision,
            {n: User(pw, list(roles), nopw) for n, pw, roles, nopw in snap.users},
            {n: Role([(int(t), k, e) for t, k, e in perms]) for n, perms in snap.roles},
        )

    def replace(
        self, enabled: bool, revision: int, users: dict[str, User], roles: dict[str, Role]
    ) -> None:
        """Replace the whole state (a snapshot's, or an imported etcd backend's)."""
        self.enabled, self.revision = enabled, revision
        self.users, self.roles = users, roles
        self._perm_cache.clear()

    def _check(self) -> None:
        if self.enabled:
            assert self.is_root(ROOT), "auth enabled without root user holding role root"
        for name, user in self.users.items():
            assert name, "empty user name"
            assert user.roles == sorted(set(user.roles)), (name, user.roles)
            for r in user.roles:
                assert r == ROOT or r in self.roles, (name, r)
            assert user.no_password or user.password.startswith(b"$2"), name
        for name, role in self.roles.items():
            ranges = [(k, e) for _t, k, e in role.perms]
            assert ranges == sorted(set(ranges)), (name, ranges)
            for t, k, e in role.perms:
                assert t in (0, 1, 2), (name, t)
                assert _valid_range(k, e), (name, k, e)
