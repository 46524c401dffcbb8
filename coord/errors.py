"""Typed errors shared by the client and the server.

etcd clients recognise errors by gRPC status code *and exact message text*
(``rpctypes.errStringToError`` in clientv3), so each class below carries the
code and the verbatim etcd message. The server raises these classes and the
API layer turns them into gRPC statuses; the client turns statuses back into
these classes with :func:`from_status`. Every error derives from
:class:`CoordError`.

Deprecated name (removed in the next release): ``TimeoutError``, now
:class:`RequestTimeoutError` (the old name shadowed the builtin). Reading it, as
``coord.errors.TimeoutError`` or ``coord.TimeoutError``, warns (``DeprecationWarning``) and
returns :class:`RequestTimeoutError`.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

from ._enum import NamedIntEnum

__all__ = [
    "RootRoleNotExistError",
    "UserAlreadyExistError",
    "UserEmptyError",
    "RoleAlreadyExistError",
    "RoleEmptyError",
    "PermissionNotGivenError",
    "RoleNotGrantedError",
    "PermissionNotGrantedError",
    "InvalidAuthMgmtError",
    "AuthOldRevisionError",
    "AuthFailedError",
    "AuthNotEnabledError",
    "CompactedError",
    "ConnectionFailedError",
    "CoordError",
    "DuplicateKeyError",
    "EmptyKeyError",
    "FutureRevisionError",
    "InvalidArgumentError",
    "InvalidSortOptionError",
    "KeyNotFoundError",
    "LeaderChangedError",
    "LeaseExistsError",
    "LeaseExpiredError",
    "LeaseNotFoundError",
    "LeaseProvidedError",
    "LeaseTTLTooLargeError",
    "LearnerNotReadyError",
    "LockTimeoutError",
    "MemberExistsError",
    "MemberNotFoundError",
    "MemberNotLearnerError",
    "NoLeaderError",
    "NoSpaceError",
    "NotLeaderError",
    "NotSupportedForLearnerError",
    "PeerURLExistsError",
    "PermissionDeniedError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "RoleNotFoundError",
    "RootUserNotExistError",
    "ServerStoppedError",
    "SessionExpiredError",
    "Status",
    "TimeoutDueToLeaderFailError",
    "TLSConfigError",
    "TLSHandshakeError",
    "TooManyOpsError",
    "UnavailableError",
    "UnhealthyClusterError",
    "UserNotFoundError",
    "ValueProvidedError",
    "WatchCanceledError",
    "BadLeaderTransfereeError",
    "InvalidAuthTokenError",
    "from_status",
]


class Status(NamedIntEnum):
    """gRPC status codes (the numbers are the wire values); a code prints its name
    (``UNAVAILABLE``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class CoordError(Exception):
    """Base class of every error raised by coord (client, recipes and server).

    Attributes:
        code: the gRPC status code this error travels as.
        message: the exact text sent on the wire (etcd's text for etcd's errors).
    """

    code: ClassVar[Status] = Status.UNKNOWN
    default_message: ClassVar[str] = ""

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else (self.default_message or "")
        super().__init__(self.message)


class InvalidArgumentError(CoordError):
    """A request the server rejected as malformed (INVALID_ARGUMENT)."""

    code = Status.INVALID_ARGUMENT


class UnavailableError(CoordError):
    """The server cannot serve the request right now (UNAVAILABLE); retrying may help."""

    code = Status.UNAVAILABLE


class EmptyKeyError(InvalidArgumentError):
    """A key was required but empty."""

    default_message = "etcdserver: key is not provided"


class KeyNotFoundError(InvalidArgumentError):
    """ignore_value/ignore_lease on a missing key, or an empty txn operation."""

    default_message = "etcdserver: key not found"


class ValueProvidedError(InvalidArgumentError):
    """A value was given together with ignore_value."""

    default_message = "etcdserver: value is provided"


class LeaseProvidedError(InvalidArgumentError):
    """A lease was given together with ignore_lease."""

    default_message = "etcdserver: lease is provided"


class TooManyOpsError(InvalidArgumentError):
    """A txn branch or compare list is longer than --max-txn-ops."""

    default_message = "etcdserver: too many operations in txn request"


class DuplicateKeyError(InvalidArgumentError):
    """A txn writes the same key twice."""

    default_message = "etcdserver: duplicate key given in txn request"


class InvalidSortOptionError(InvalidArgumentError):
    """A Range asked for an unknown sort order or target."""

    default_message = "etcdserver: invalid sort option"


class RequestTooLargeError(InvalidArgumentError):
    """The request is larger than --max-request-bytes."""

    default_message = "etcdserver: request is too large"


class CompactedError(CoordError):
    """The requested revision has been compacted away.

    Attributes:
        compact_revision: the store's compaction revision when known (watches set it).
    """

    code = Status.OUT_OF_RANGE
    default_message = "etcdserver: mvcc: required revision has been compacted"

    def __init__(self, message: str | None = None, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class FutureRevisionError(CoordError):
    """The requested revision is newer than the store's current revision."""

    code = Status.OUT_OF_RANGE
    default_message = "etcdserver: mvcc: required revision is a future revision"


class NoSpaceError(CoordError):
    """The NOSPACE alarm is raised: writes fail until it is disarmed."""

    code = Status.RESOURCE_EXHAUSTED
    default_message = "etcdserver: mvcc: database space exceeded"


class LeaseNotFoundError(CoordError):
    """The lease does not exist (never granted, revoked or expired)."""

    code = Status.NOT_FOUND
    default_message = "etcdserver: requested lease not found"


class LeaseExistsError(CoordError):
    """A lease with the requested ID already exists."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: lease already exists"


class LeaseTTLTooLargeError(CoordError):
    """The requested TTL exceeds 9,000,000,000 seconds."""

    code = Status.OUT_OF_RANGE
    default_message = "etcdserver: too large lease TTL"


class WatchCanceledError(CoordError):
    """A watch was cancelled by the server."""

    code = Status.CANCELLED
    default_message = "etcdserver: watch canceled"


class MemberExistsError(CoordError):
    """A member with that ID already exists."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: member ID already exist"


class PeerURLExistsError(CoordError):
    """Another member already uses that peer URL."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: Peer URLs already exists"


class MemberNotFoundError(CoordError):
    """No member has that ID."""

    code = Status.NOT_FOUND
    default_message = "etcdserver: member not found"


class MemberNotLearnerError(CoordError):
    """Only a learner can be promoted."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: can only promote a learner member"


class LearnerNotReadyError(CoordError):
    """A learner can be promoted only once its log is in sync with the leader's."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: can only promote a learner member which is in sync with leader"


class NoLeaderError(UnavailableError):
    """The member knows no leader (election in progress or quorum lost)."""

    default_message = "etcdserver: no leader"


class NotLeaderError(CoordError):
    """The request needs the leader and this member is not it."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: not leader"


class LeaderChangedError(UnavailableError):
    """Leadership changed while the request was in flight; its outcome is unknown."""

    default_message = "etcdserver: leader changed"


class ServerStoppedError(UnavailableError):
    """The server is shutting down."""

    default_message = "etcdserver: server stopped"


class RequestTimeoutError(UnavailableError):
    """The server could not finish the request in time; its outcome is unknown."""

    default_message = "etcdserver: request timed out"


class TimeoutDueToLeaderFailError(RequestTimeoutError):
    """The request timed out after its leader was lost; its outcome is unknown."""

    default_message = "etcdserver: request timed out, possibly due to previous leader failure"


class UnhealthyClusterError(UnavailableError):
    """The cluster is not healthy enough for the request (e.g. a removal would lose quorum)."""

    default_message = "etcdserver: unhealthy cluster"


class NotSupportedForLearnerError(CoordError):
    """Learners serve only Status and serializable Range."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: rpc not supported for learner"


class BadLeaderTransfereeError(CoordError):
    """MoveLeader named a member that cannot become leader."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: bad leader transferee"


class AuthFailedError(InvalidArgumentError):
    """Wrong user name or password."""

    default_message = "etcdserver: authentication failed, invalid user ID or password"


class InvalidAuthTokenError(CoordError):
    """The auth token is invalid or expired."""

    code = Status.UNAUTHENTICATED
    default_message = "etcdserver: invalid auth token"


class PermissionDeniedError(CoordError):
    """The user may not perform this request."""

    code = Status.PERMISSION_DENIED
    default_message = "etcdserver: permission denied"


class AuthNotEnabledError(CoordError):
    """Authentication was requested but auth is not enabled."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: authentication is not enabled"


class RootUserNotExistError(CoordError):
    """AuthEnable without a root user."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: root user does not exist"


class UserNotFoundError(CoordError):
    """No user has that name."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: user name not found"


class RoleNotFoundError(CoordError):
    """No role has that name."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: role name not found"


class RootRoleNotExistError(CoordError):
    """AuthEnable while the root user does not hold the root role."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: root user does not have root role"


class UserAlreadyExistError(CoordError):
    """UserAdd of an existing user."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: user name already exists"


class UserEmptyError(InvalidArgumentError):
    """An empty user name, or a request without credentials while auth is enabled."""

    default_message = "etcdserver: user name is empty"


class RoleAlreadyExistError(CoordError):
    """RoleAdd of an existing role."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: role name already exists"


class RoleEmptyError(InvalidArgumentError):
    """An empty role name."""

    default_message = "etcdserver: role name is empty"


class PermissionNotGivenError(InvalidArgumentError):
    """RoleGrantPermission without a permission."""

    default_message = "etcdserver: permission not given"


class RoleNotGrantedError(CoordError):
    """UserRevokeRole of a role the user does not hold."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: role is not granted to the user"


class PermissionNotGrantedError(CoordError):
    """RoleRevokePermission of a permission the role does not hold."""

    code = Status.FAILED_PRECONDITION
    default_message = "etcdserver: permission is not granted to the role"


class InvalidAuthMgmtError(InvalidArgumentError):
    """Removing root's powers while auth is enabled, or an invalid permission range."""

    default_message = "etcdserver: invalid auth management"


class AuthOldRevisionError(InvalidArgumentError):
    """Auth state changed between checking a password and applying the login."""

    default_message = "etcdserver: revision of auth store is old"


class ConnectionFailedError(UnavailableError):
    """No endpoint could be reached (the request surely never reached a server)."""

    default_message = "coord: could not connect to any endpoint"


class TLSHandshakeError(ConnectionFailedError):
    """A TLS connection could not be set up; the message names the endpoint and the likely
    cause (server certificate not signed by ``ca_cert``, hostname mismatch, client
    certificate required or rejected, TLS against a plain endpoint or the reverse)."""

    default_message = "coord: TLS connection failed"


class TLSConfigError(CoordError):
    """A TLS file given to the client (``ca_cert``, ``cert``, ``key``) is missing,
    unreadable or not valid PEM, or the key does not match the certificate. Raised when the
    ``Client``/``AsyncClient`` is created; the message names the parameter and the path."""

    code = Status.INVALID_ARGUMENT


class LeaseExpiredError(CoordError):
    """A lease kept alive by the client expired or was revoked."""

    default_message = "coord: lease expired"


class SessionExpiredError(LeaseExpiredError):
    """A recipe's session (its lease) was lost; what depended on it is no longer held."""

    default_message = "coord: session expired"


class LockTimeoutError(CoordError):
    """A blocking recipe call did not finish within its timeout."""

    code = Status.DEADLINE_EXCEEDED
    default_message = "coord: timed out waiting"


def _all_with_messages() -> dict[str, type[CoordError]]:
    out: dict[str, type[CoordError]] = {}
    stack: list[type[CoordError]] = [CoordError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.default_message.startswith("etcdserver: "):
            out[cls.default_message] = cls
    return out


_BY_MESSAGE = _all_with_messages()
_BY_CODE: dict[Status, type[CoordError]] = {
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.UNAVAILABLE: UnavailableError,
}


def from_status(code: int, message: str | None) -> CoordError:
    """Map a gRPC status (code and message text) to the matching typed error.

    The message is matched exactly against etcd's texts first; unknown messages fall back to
    a class chosen by code, keeping the server's text.
    """
    text = message or ""
    cls = _BY_MESSAGE.get(text)
    if cls is None:
        try:
            status = Status(code)
        except ValueError:
            status = Status.UNKNOWN
        cls = _BY_CODE.get(status)
        if cls is None:
            err = CoordError(text)
            err.code = status  # type: ignore[misc]
            return err
    return cls(text)


#: Deprecated names (removed in the next release) -> their current classes.
_DEPRECATED: dict[str, type[CoordError]] = {"TimeoutError": RequestTimeoutError}


def _deprecated_alias(module: str, name: str) -> type[CoordError]:
    """The class a deprecated ``module.name`` stands for, with a ``DeprecationWarning`` for
    the code that read it; ``AttributeError`` for any other name."""
    cls = _DEPRECATED.get(name)
    if cls is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(
        f"{module}.{name} is deprecated (it shadows the builtin): use {module}.{cls.__name__}",
        DeprecationWarning,
        stacklevel=3,
    )
    return cls


def __getattr__(name: str) -> type[CoordError]:
    return _deprecated_alias(__name__, name)
