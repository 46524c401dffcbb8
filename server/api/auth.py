"""etcdserverpb.Auth: users, roles, permissions, logins (etcd's auth, server/auth/store.go).

Theory of operation: every change is a ``Kind.AUTH`` command applied by the replicated
:class:`coord.server.auth.AuthStore`, which raises etcd's errors. Passwords are hashed here,
on the member that took the request and off the event loop (bcrypt at ``--bcrypt-cost``), so
the log and snapshots hold only hashes, as etcd does. Authenticate checks the password here
too, against the state this member has applied, then either replicates the login with a
fresh simple token (every member learns it as it applies the login; the apply refuses it if
the auth revision moved meanwhile) or signs a JWT. Reads (status, lists, gets) answer from
this member's applied state. Who may call what is :mod:`coord.server.auth.guard`'s business:
the request wrapper checks it before any handler here runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import bcrypt
from grpclib.const import Handler

from coord._pb import etcdserverpb as pb
from coord.errors import AuthFailedError, AuthNotEnabledError, UserEmptyError
from coord.server.auth import AuthStore, Op, TokenProvider
from coord.server.auth.store import login_payload
from coord.server.command import Kind

from .common import ApiContext, RawStream, parse, unary_handlers

__all__ = ["AuthService"]

#: Requests that change auth state, applied as they came (no password in them).
_CHANGES: dict[str, tuple[Op, type]] = {
    "AuthEnable": (Op.ENABLE, pb.AuthEnableRequest),
    "AuthDisable": (Op.DISABLE, pb.AuthDisableRequest),
    "UserDelete": (Op.USER_DELETE, pb.AuthUserDeleteRequest),
    "UserGrantRole": (Op.USER_GRANT_ROLE, pb.AuthUserGrantRoleRequest),
    "UserRevokeRole": (Op.USER_REVOKE_ROLE, pb.AuthUserRevokeRoleRequest),
    "RoleAdd": (Op.ROLE_ADD, pb.AuthRoleAddRequest),
    "RoleDelete": (Op.ROLE_DELETE, pb.AuthRoleDeleteRequest),
    "RoleGrantPermission": (Op.ROLE_GRANT_PERMISSION, pb.AuthRoleGrantPermissionRequest),
    "RoleRevokePermission": (Op.ROLE_REVOKE_PERMISSION, pb.AuthRoleRevokePermissionRequest),
}


class AuthService:
    """The Auth service (see the module docstring)."""

    def __init__(self, ctx: ApiContext, tokens: TokenProvider) -> None:
        self.ctx = ctx
        self.tokens = tokens

    @property
    def store(self) -> AuthStore:
        return self.ctx.sm.auth

    async def _apply(self, op: Op, request: bytes) -> bytes:
        rev, body = await self.ctx.propose(Kind.AUTH, bytes((op,)) + request)
        return self.ctx.response(rev, body)

    def change(self, op: Op, cls: type) -> Callable[[RawStream, bytes], Awaitable[bytes]]:
        """The handler of a change that carries no password: checked, then applied."""

        async def run(stream: RawStream, data: bytes) -> bytes:
            parse(cls, data)  # malformed requests fail here, not in every member's apply
            return await self._apply(op, data)

        return run

    async def _hash(self, password: str) -> str:
        cost = self.ctx.config.bcrypt_cost
        hashed = await anyio.to_thread.run_sync(
            bcrypt.hashpw, password.encode(), bcrypt.gensalt(cost)
        )
        return hashed.decode()

    async def user_add(self, stream: RawStream, data: bytes) -> bytes:
        req = parse(pb.AuthUserAddRequest, data)
        if not req.name:
            raise UserEmptyError()
        no_password = req.options is not None and req.options.no_password
        if not no_password and not req.hashed_password:
            req.hashed_password = await self._hash(req.password)
        req.password = ""
        return await self._apply(Op.USER_ADD, bytes(req))

    async def user_change_password(self, stream: RawStream, data: bytes) -> bytes:
        req = parse(pb.AuthUserChangePasswordRequest, data)
        if not req.hashed_password:
            req.hashed_password = await self._hash(req.password)
        req.password = ""
        return await self._apply(Op.USER_CHANGE_PASSWORD, bytes(req))

    async def authenticate(self, stream: RawStream, data: bytes) -> bytes:
        """Authenticate: check the password here, then issue a token (module docstring)."""
        req = parse(pb.AuthenticateRequest, data)
        store = self.store
        if not store.enabled:
            raise AuthNotEnabledError()
        revision = store.revision
        user = store.users.get(req.name)
        if user is None or user.no_password:
            raise AuthFailedError()
        ok = await anyio.to_thread.run_sync(bcrypt.checkpw, req.password.encode(), user.password)
        if not ok:
            raise AuthFailedError()
        token = self.tokens.new(req.name, revision)
        if not self.tokens.replicated:
            return self.ctx.current(bytes(pb.AuthenticateResponse(token=token)))
        return await self._apply(Op.AUTHENTICATE, login_payload(req.name, token, revision))

    async def status(self, stream: RawStream, data: bytes) -> bytes:
        store = self.store
        body = pb.AuthStatusResponse(enabled=store.enabled, auth_revision=store.revision)
        return self.ctx.current(bytes(body))

    async def user_get(self, stream: RawStream, data: bytes) -> bytes:
        name = parse(pb.AuthUserGetRequest, data).name
        roles = self.store.user_roles(name)
        return self.ctx.current(bytes(pb.AuthUserGetResponse(roles=roles)))

    async def user_list(self, stream: RawStream, data: bytes) -> bytes:
        users = sorted(self.store.users)
        return self.ctx.current(bytes(pb.AuthUserListResponse(users=users)))

    async def role_get(self, stream: RawStream, data: bytes) -> bytes:
        name = parse(pb.AuthRoleGetRequest, data).role
        perms = self.store.role_permissions(name)
        return self.ctx.current(bytes(pb.AuthRoleGetResponse(perm=perms)))

    async def role_list(self, stream: RawStream, data: bytes) -> bytes:
        roles = sorted(self.store.roles)
        return self.ctx.current(bytes(pb.AuthRoleListResponse(roles=roles)))

    def __mapping__(self) -> dict[str, Handler]:
        """grpclib handler table."""
        table: dict[str, Callable[[RawStream, bytes], Awaitable[bytes]]] = {
            "Authenticate": self.authenticate,
            "AuthStatus": self.status,
            "UserAdd": self.user_add,
            "UserChangePassword": self.user_change_password,
            "UserGet": self.user_get,
            "UserList": self.user_list,
            "RoleGet": self.role_get,
            "RoleList": self.role_list,
        }
        for name, (op, cls) in _CHANGES.items():
            table[name] = self.change(op, cls)
        return unary_handlers(self.ctx, {"/etcdserverpb.Auth/" + n: f for n, f in table.items()})
