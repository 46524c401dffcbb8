"""etcdserverpb.Auth: a minimal, always-disabled auth service.

coord does not implement users and roles yet. AuthStatus reports ``enabled: false`` so tools
that probe it (etcdctl, clients) proceed; read-only listings answer empty; lookups and
Authenticate fail with etcd's own errors for a server without users; anything that would
change auth state is UNIMPLEMENTED with a clear message.
"""

from __future__ import annotations

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError

from coord._pb import etcdserverpb as pb
from coord.errors import (
    AuthNotEnabledError,
    RoleNotFoundError,
    RootUserNotExistError,
    UserNotFoundError,
)

from .common import ApiContext, RawStream, handler, unary

__all__ = ["AuthService"]

_UNSUPPORTED = (
    "UserAdd",
    "UserDelete",
    "UserChangePassword",
    "UserGrantRole",
    "UserRevokeRole",
    "RoleAdd",
    "RoleDelete",
    "RoleGrantPermission",
    "RoleRevokePermission",
)


class AuthService:
    """The Auth service with auth permanently disabled."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def status(self, stream: RawStream, data: bytes) -> bytes:
        """AuthStatus: disabled."""
        return self.ctx.current(bytes(pb.AuthStatusResponse(enabled=False)))

    async def disable(self, stream: RawStream, data: bytes) -> bytes:
        """AuthDisable: already disabled (idempotent, as etcd)."""
        return self.ctx.current()

    async def enable(self, stream: RawStream, data: bytes) -> bytes:
        """AuthEnable: there is never a root user."""
        raise RootUserNotExistError()

    async def authenticate(self, stream: RawStream, data: bytes) -> bytes:
        """Authenticate: auth is not enabled."""
        raise AuthNotEnabledError()

    async def user_list(self, stream: RawStream, data: bytes) -> bytes:
        """No users."""
        return self.ctx.current()

    async def role_list(self, stream: RawStream, data: bytes) -> bytes:
        """No roles."""
        return self.ctx.current()

    async def user_get(self, stream: RawStream, data: bytes) -> bytes:
        """No such user."""
        raise UserNotFoundError()

    async def role_get(self, stream: RawStream, data: bytes) -> bytes:
        """No such role."""
        raise RoleNotFoundError()

    async def unsupported(self, stream: RawStream, data: bytes) -> bytes:
        """Auth management is not implemented."""
        raise GRPCError(Status.UNIMPLEMENTED, "coord: auth management is not supported")

    def __mapping__(self) -> dict[str, Handler]:
        """grpclib handler table."""
        u = Cardinality.UNARY_UNARY
        c = self.ctx
        p = "/etcdserverpb.Auth/"
        table = {
            "AuthStatus": self.status,
            "AuthDisable": self.disable,
            "AuthEnable": self.enable,
            "Authenticate": self.authenticate,
            "UserList": self.user_list,
            "RoleList": self.role_list,
            "UserGet": self.user_get,
            "RoleGet": self.role_get,
        }
        table.update(dict.fromkeys(_UNSUPPORTED, self.unsupported))
        return {p + name: handler(unary(c, fn), u) for name, fn in table.items()}
