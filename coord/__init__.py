"""coord: a client for coord-server and etcd v3.

``Client`` (blocking) and ``AsyncClient`` (asyncio) share one implementation. Keys and values
are ``bytes`` in every result (``str`` is accepted as input and encoded as UTF-8). See
docs/client.md.
"""

import os as _os
from importlib import metadata as _metadata

from . import _checkout, errors
from .aio import AsyncClient
from .client import Client, Lease, Watch
from .errors import (
    AuthFailedError,
    CompactedError,
    ConnectionFailedError,
    CoordError,
    DuplicateKeyError,
    EmptyKeyError,
    FutureRevisionError,
    InvalidArgumentError,
    InvalidAuthTokenError,
    KeyNotFoundError,
    LeaseExpiredError,
    LeaseNotFoundError,
    NoLeaderError,
    NoSpaceError,
    PermissionDeniedError,
    RequestTimeoutError,
    RequestTooLargeError,
    TLSConfigError,
    TLSHandshakeError,
    TooManyOpsError,
    UnavailableError,
    WatchCanceledError,
)
from .lease import AsyncLease
from .txn import (
    Compare,
    CreateRevision,
    Delete,
    Get,
    LeaseId,
    ModRevision,
    Op,
    Put,
    Txn,
    Value,
    Version,
    prefix_end,
)
from .types import (
    Event,
    EventType,
    HashKV,
    KeyValue,
    LeaseInfo,
    Member,
    RangeResult,
    ServerStatus,
    TxnResult,
    WatchResponse,
)
from .watch import AsyncWatch

_checkout.install(_os.path.dirname(__file__))  # coord.server/.recipes in a checkout

try:
    #: coord's version, from the installed distribution's metadata (pyproject.toml)
    __version__ = _metadata.version("coord")
except _metadata.PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "AsyncClient",
    "AsyncLease",
    "AsyncWatch",
    "AuthFailedError",
    "Client",
    "CompactedError",
    "Compare",
    "ConnectionFailedError",
    "CoordError",
    "CreateRevision",
    "Delete",
    "DuplicateKeyError",
    "EmptyKeyError",
    "Event",
    "EventType",
    "FutureRevisionError",
    "Get",
    "HashKV",
    "InvalidArgumentError",
    "InvalidAuthTokenError",
    "KeyNotFoundError",
    "KeyValue",
    "Lease",
    "LeaseExpiredError",
    "LeaseId",
    "LeaseInfo",
    "LeaseNotFoundError",
    "Member",
    "ModRevision",
    "NoLeaderError",
    "NoSpaceError",
    "Op",
    "PermissionDeniedError",
    "Put",
    "RangeResult",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ServerStatus",
    "TLSConfigError",
    "TLSHandshakeError",
    "TooManyOpsError",
    "Txn",
    "TxnResult",
    "UnavailableError",
    "Value",
    "Version",
    "Watch",
    "WatchCanceledError",
    "WatchResponse",
    "errors",
    "prefix_end",
]


def __getattr__(name: str) -> type[CoordError]:
    """Deprecated names: ``coord.TimeoutError`` is :class:`RequestTimeoutError` (with a
    ``DeprecationWarning``; removed in the next release)."""
    return errors._deprecated_alias(__name__, name)
