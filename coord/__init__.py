"""coord: a client for coord-server and etcd v3.

``Client`` (blocking) and ``AsyncClient`` (asyncio) share one implementation. Keys and values
are ``bytes`` in every result (``str`` is accepted as input and encoded as UTF-8). See
docs/client.md.

The public names are loaded lazily (PEP 562): ``import coord`` imports none of the client's
modules, and ``coord.Client`` imports :mod:`coord.client` on first use. The server
(``coord.server``, a subpackage) therefore never loads the client's transport (``coord._conn``,
``coord._h2``, ``grpclib.client``) just because Python imports its parent package first;
tests/test_layering.py checks that.
"""

from __future__ import annotations

import importlib as _importlib
import os as _os
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from . import _checkout

if TYPE_CHECKING:
    from . import errors
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

#: public name -> the submodule that defines it (loaded on first access)
_LAZY: dict[str, str] = {
    name: module
    for module, names in {
        "aio": ("AsyncClient",),
        "client": ("Client", "Lease", "Watch"),
        "errors": (
            "AuthFailedError",
            "CompactedError",
            "ConnectionFailedError",
            "CoordError",
            "DuplicateKeyError",
            "EmptyKeyError",
            "FutureRevisionError",
            "InvalidArgumentError",
            "InvalidAuthTokenError",
            "KeyNotFoundError",
            "LeaseExpiredError",
            "LeaseNotFoundError",
            "NoLeaderError",
            "NoSpaceError",
            "PermissionDeniedError",
            "RequestTimeoutError",
            "RequestTooLargeError",
            "TLSConfigError",
            "TLSHandshakeError",
            "TooManyOpsError",
            "UnavailableError",
            "WatchCanceledError",
        ),
        "lease": ("AsyncLease",),
        "txn": (
            "Compare",
            "CreateRevision",
            "Delete",
            "Get",
            "LeaseId",
            "ModRevision",
            "Op",
            "Put",
            "Txn",
            "Value",
            "Version",
            "prefix_end",
        ),
        "types": (
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
        ),
        "watch": ("AsyncWatch",),
    }.items()
    for name in names
}


def __getattr__(name: str) -> Any:
    """Load a public name from its submodule on first access (then it is a plain global).

    Deprecated names: ``coord.TimeoutError`` is :class:`RequestTimeoutError` (with a
    ``DeprecationWarning``; removed in the next release).
    """
    if name == "errors":
        value: Any = _importlib.import_module(".errors", __name__)
    else:
        module = _LAZY.get(name)
        if module is None:
            from .errors import _deprecated_alias

            return _deprecated_alias(__name__, name)
        value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's globals plus the public names not loaded yet."""
    return sorted(set(globals()) | set(__all__))
