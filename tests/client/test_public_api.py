"""Pin the public surface of ``coord`` (like h11's and trio's export tests)."""

from __future__ import annotations

import inspect

import coord
import coord.errors

EXPECTED = {
    "AsyncClient", "AsyncLease", "AsyncWatch", "AuthFailedError", "Client", "CompactedError",
    "Compare", "ConnectionFailedError", "CoordError", "CreateRevision", "Delete",
    "DuplicateKeyError", "EmptyKeyError", "Event", "EventType", "FutureRevisionError", "Get",
    "HashKV", "InvalidArgumentError", "InvalidAuthTokenError", "KeyNotFoundError", "KeyValue",
    "Lease", "LeaseExpiredError", "LeaseId", "LeaseInfo", "LeaseNotFoundError", "Member",
    "ModRevision", "NoLeaderError", "NoSpaceError", "Op", "PermissionDeniedError", "Put",
    "RangeResult", "RequestTooLargeError", "ServerStatus", "TLSConfigError",
    "TLSHandshakeError", "TooManyOpsError", "Txn",
    "TxnResult", "UnavailableError", "Value", "Version", "Watch", "WatchCanceledError",
    "WatchResponse", "__version__", "errors", "prefix_end",
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
