"""Authentication and role-based access control (etcd's auth): replicated users and roles
(:mod:`.store`), tokens (:mod:`.tokens`), key-range permissions (:mod:`.perms`), and the
check every request passes (:mod:`.guard`)."""

from .guard import Guard
from .store import ROOT, AuthStore, Op
from .tokens import TokenProvider, parse_auth_token

__all__ = ["ROOT", "AuthStore", "Guard", "Op", "TokenProvider", "parse_auth_token"]
