"""Auth tokens: etcd's ``simple`` tokens and signed JWTs (``--auth-token``).

Theory of operation: a login checks the password on the member that received it, then a
token names the user in later requests. Both kinds are bound to the auth revision at login:
any later change of users, roles or permissions (a new revision) makes them
``etcdserver: invalid auth token``, and the client logs in again.

* ``simple`` (the default, as in etcd): a random token. The login is replicated
  (``Op.AUTHENTICATE`` carries the token), so every member's :class:`SimpleTokens` learns it as
  it applies the login. Tokens are member-local memory, not state-machine state: each lives
  ``--auth-token-ttl`` seconds from its last use (etcd's simpleTokenTTLKeeper), and a member
  that restarts or installs a snapshot forgets them (the client logs in again).
* ``jwt,pub-key=…,priv-key=…,sign-method=…[,ttl=…]``: a JWT signed with PyJWT (claims
  ``username``, ``revision``, ``exp``, as etcd's tokenJWT), checked on any member without
  replication; its lifetime is the ``ttl`` option (default 5 minutes, as etcd).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from coord.errors import InvalidAuthTokenError

__all__ = ["JwtTokens", "SimpleTokens", "TokenProvider", "parse_auth_token"]

#: How long a JWT lives without a ``ttl`` option (etcd's default).
JWT_DEFAULT_TTL = 300.0
JWT_METHODS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


class SimpleTokens:
    """Random tokens replicated with the login; expire ``ttl`` seconds after their last use."""

    replicated = True

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._tokens: dict[str, tuple[str, int, float]] = {}  # token -> (user, revision, deadline)

    def new(self, name: str, revision: int) -> str:
        """A fresh token for ``name`` (etcd's format: 16 letters, '.', a counter-like tail)."""
        return f"{secrets.token_urlsafe(12)}.{secrets.randbelow(1 << 30)}"

    def learn(self, name: str, token: str, revision: int) -> None:
        """An applied login: ``token`` names ``name`` at auth ``revision``."""
        self._expire()
        self._tokens[token] = (name, revision, self._clock() + self.ttl)

    def user(self, token: str, revision: int) -> str:
        """The user ``token`` names; InvalidAuthTokenError if unknown, expired or stale."""
        entry = self._tokens.get(token)
        now = self._clock()
        if entry is None or entry[2] <= now or entry[1] != revision:
            self._tokens.pop(token, None)
            raise InvalidAuthTokenError()
        self._tokens[token] = (entry[0], entry[1], now + self.ttl)
        return entry[0]

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, e in self._tokens.items() if e[2] <= now]:
            del self._tokens[token]

    def _check(self) -> None:
        for token, (name, revision, _deadline) in self._tokens.items():
            assert token
            assert name
            assert revision >= 0


class JwtTokens:
    """Signed JWTs (PyJWT); any member holding the public key checks them."""

    replicated = False

    def __init__(
        self, method: str, private_key: bytes | None, public_key: bytes, ttl: float
    ) -> None:
        self.method = method
        self._private = private_key
        self._public = public_key
        self.ttl = ttl

    def new(self, name: str, revision: int) -> str:
        """A token for ``name`` at auth ``revision``, valid for ``ttl`` seconds."""
        if self._private is None:
            raise InvalidAuthTokenError("coord: this member has no JWT private key to sign with")
        claims = {"username": name, "revision": revision, "exp": int(time.time() + self.ttl)}
        return jwt.encode(claims, self._private, algorithm=self.method)

    def learn(self, name: str, token: str, revision: int) -> None:
        """JWT logins are not replicated: nothing to learn."""

    def user(self, token: str, revision: int) -> str:
        """The user ``token`` names; InvalidAuthTokenError if forged, expired or stale."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,
                algorithms=[self.method],
                options={"require": ["exp", "username", "revision"]},
            )
        except jwt.PyJWTError:
            raise InvalidAuthTokenError() from None
        if claims["revision"] != revision or not isinstance(claims["username"], str):
            raise InvalidAuthTokenError()
        return claims["username"]


TokenProvider = SimpleTokens | JwtTokens


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def parse_auth_token(spec: str, simple_ttl: float) -> TokenProvider:
    """The provider for an ``--auth-token`` value; ValueError with a clear message if bad."""
    kind, _, rest = spec.partition(",")
    if kind == "simple" and not rest:
        return SimpleTokens(simple_ttl)
    if kind != "jwt":
        raise ValueError(f"--auth-token: unknown token type {kind!r} (use simple or jwt,...)")
    opts: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        name, eq, value = part.partition("=")
        if not eq or name not in ("pub-key", "priv-key", "sign-method", "ttl"):
            raise ValueError(f"--auth-token: unknown jwt option {part!r}")
        opts[name] = value
    method = opts.get("sign-method", "")
    if method not in JWT_METHODS:
        raise ValueError(f"--auth-token: sign-method must be one of {', '.join(JWT_METHODS)}")
    if "pub-key" not in opts:
        raise ValueError("--auth-token: jwt needs pub-key=<file>")
    try:
        public = Path(opts["pub-key"]).read_bytes()
        private = Path(opts["priv-key"]).read_bytes() if "priv-key" in opts else None
        ttl = _seconds(opts["ttl"]) if "ttl" in opts else JWT_DEFAULT_TTL
    except OSError as e:
        raise ValueError(f"--auth-token: cannot read key: {e}") from None
    tokens = JwtTokens(method, private, public, ttl)
    if private is not None:  # a key pair that does not match fails now, not at first login
        try:
            tokens.user(tokens.new("root", 0), 0)
        except Exception as e:
            raise ValueError(f"--auth-token: the jwt keys do not work together: {e}") from None
    return tokens
