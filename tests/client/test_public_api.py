"""Pin the public surface of ``coord`` (like h11's and trio's export tests)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import coord
import coord.errors

EXPECTED = {
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
    "__version__",
    "errors",
    "prefix_end",
}


def test_all_is_pinned() -> None:
    assert set(coord.__all__) == EXPECTED
    assert len(coord.__all__) == len(set(coord.__all__))
    for name in coord.__all__:
        assert hasattr(coord, name), name


def test_public_names_have_docstrings() -> None:
    for name in coord.__all__:
        obj = getattr(coord, name)
        assert inspect.getdoc(obj), f"{name} has no docstring"
        if inspect.isclass(obj) and obj.__module__.startswith("coord."):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not callable(member):
                    continue
                assert inspect.getdoc(member), f"{name}.{attr} has no docstring"


def test_errors_share_base_and_from_status() -> None:
    for name in coord.errors.__all__:
        obj = getattr(coord.errors, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, coord.CoordError), name
    err = coord.errors.from_status(11, "etcdserver: mvcc: required revision has been compacted")
    assert isinstance(err, coord.CompactedError)


def test_py_typed_marker_exists() -> None:
    from pathlib import Path

    assert (Path(coord.__file__).parent / "py.typed").exists()


@pytest.mark.parametrize("module", [coord, coord.errors], ids=["coord", "coord.errors"])
def test_timeout_error_is_a_deprecated_alias_of_request_timeout_error(module: Any) -> None:
    assert "TimeoutError" not in module.__all__  # it shadowed the builtin
    with pytest.warns(
        DeprecationWarning,
        match=rf"{module.__name__}\.TimeoutError is "
        rf"deprecated .*RequestTimeoutError",
    ):
        alias = module.TimeoutError
    assert alias is not TimeoutError  # the builtin
    assert alias is coord.errors.RequestTimeoutError
    assert issubclass(coord.errors.TimeoutDueToLeaderFailError, alias)
    with pytest.warns(DeprecationWarning, match=r"coord\.errors\.TimeoutError is deprecated"):
        from coord.errors import TimeoutError as imported
    assert imported is alias
    with pytest.raises(AttributeError, match="no attribute 'NoSuchError'"):
        module.NoSuchError  # noqa: B018 (the attribute access is the test)
