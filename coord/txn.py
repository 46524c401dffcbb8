"""Transaction builders: compares (``Value("/k") == "v"``) and operations (Put, Get, Delete, Txn).

A transaction is ``client.txn(compare=[...], success=[...], failure=[...])``. Compares are built
from a target and an operator::

    Value("/k") == "v"          Version("/k") > 0          CreateRevision("/k") == 0
    ModRevision("/k") < 42      LeaseId("/k") != 0         Value("/a", prefix=True) == "x"

Operations mirror the client methods (``Put``, ``Get``, ``Delete``) and nest (``Txn``). See
:class:`coord.types.TxnResult` for what each operation yields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ._pb import etcdserverpb as pb

__all__ = [
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
    "to_bytes",
]

KeyLike = str | bytes | bytearray | memoryview


def to_bytes(data: KeyLike) -> bytes:
    """Encode a key or value: ``str`` as UTF-8, bytes-like as is."""
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"expected str or bytes, got {type(data).__name__}")


def prefix_end(key: bytes) -> bytes:
    """The range end that selects every key starting with ``key`` (etcd's GetPrefixRangeEnd)."""
    for i in range(len(key) - 1, -1, -1):
        if key[i] < 0xFF:
            return key[:i] + bytes((key[i] + 1,))
    return b"\x00"


def key_range(
    key: KeyLike, range_end: KeyLike | None = None, prefix: bool = False
) -> tuple[bytes, bytes]:
    """Normalise ``(key, range_end)`` for a range/prefix request.

    ``prefix=True`` selects every key starting with ``key`` (an empty key then means all keys).
    """
    k = to_bytes(key)
    if prefix:
        if not k:
            return b"\x00", b"\x00"
        return k, prefix_end(k)
    return k, to_bytes(range_end) if range_end is not None else b""


@runtime_checkable
class _HasId(Protocol):
    id: int


def lease_id(lease: object) -> int:
    """The lease ID of a lease object (anything with ``.id``), an int, or None (0)."""
    if lease is None:
        return 0
    if isinstance(lease, int):
        return lease
    if isinstance(lease, _HasId):
        return int(lease.id)
    raise TypeError(f"expected a lease or an int lease ID, got {type(lease).__name__}")


_SORT_TARGETS = {"key": 0, "version": 1, "create": 2, "mod": 3, "value": 4}


def sort_spec(sort: str | None) -> tuple[int, int]:
    """Parse ``sort`` ("key", "-create", "mod", ...; "-" = descending) into (order, target)."""
    if not sort:
        return 0, 0
    desc = sort.startswith("-")
    name = sort[1:] if desc else sort
    try:
        target = _SORT_TARGETS[name]
    except KeyError:
        raise ValueError(
            f"unknown sort {sort!r}; use one of {sorted(_SORT_TARGETS)}"
            " optionally prefixed with '-'"
        ) from None
    return (2 if desc else 1), target


# ----------------------------------------------------------------------------------- compares

_RESULT = {
    "==": pb.CompareCompareResult.EQUAL,
    ">": pb.CompareCompareResult.GREATER,
    "<": pb.CompareCompareResult.LESS,
    "!=": pb.CompareCompareResult.NOT_EQUAL,
}


@dataclass(frozen=True, slots=True)
class Compare:
    """One transaction condition: ``<target of key> <op> <operand>``.

    Build it with the target classes (``Value(k) == v``) rather than directly.
    """

    target: int  # CompareTarget wire value
    key: bytes
    op: str  # "==", "!=", "<", ">"
    operand: int | bytes
    range_end: bytes = b""

    def to_pb(self) -> pb.Compare:
        """The ``etcdserverpb.Compare`` message."""
        c = pb.Compare(
            result=_RESULT[self.op],
            target=pb.CompareCompareTarget(self.target),
            key=self.key,
            range_end=self.range_end,
        )
        if self.target == 0:
            c.version = int(self.operand)
        elif self.target == 1:
            c.create_revision = int(self.operand)
        elif self.target == 2:
            c.mod_revision = int(self.operand)
        elif self.target == 3:
            assert isinstance(self.operand, bytes)
            c.value = self.operand
        else:
            c.lease = int(self.operand)
        return c


class _Target:
    """Base of the compare targets; ``==``, ``!=``, ``<``, ``>`` build a :class:`Compare`."""

    _target = 0
    __slots__ = ("key", "range_end")

    def __init__(
        self, key: KeyLike, range_end: KeyLike | None = None, prefix: bool = False
    ) -> None:
        self.key, self.range_end = key_range(key, range_end, prefix)

    def _operand(self, other: Any) -> int | bytes:
        if isinstance(other, bool) or not isinstance(other, int):
            raise TypeError(f"{type(self).__name__} compares with an int, got {other!r}")
        return other

    def _cmp(self, op: str, other: Any) -> Compare:
        return Compare(self._target, self.key, op, self._operand(other), self.range_end)

    def __eq__(self, other: Any) -> Compare:  # type: ignore[override]
        return self._cmp("==", other)

    def __ne__(self, other: Any) -> Compare:  # type: ignore[override]
        return self._cmp("!=", other)

    def __lt__(self, other: Any) -> Compare:
        return self._cmp("<", other)

    def __gt__(self, other: Any) -> Compare:
        return self._cmp(">", other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


class Version(_Target):
    """Compare a key's version (0 when the key does not exist)."""

    _target = 0


class CreateRevision(_Target):
    """Compare a key's create revision (0 when the key does not exist)."""

    _target = 1


class ModRevision(_Target):
    """Compare a key's mod revision (0 when the key does not exist)."""

    _target = 2


class Value(_Target):
    """Compare a key's value (bytewise); always false when the key does not exist."""

    _target = 3

    def _operand(self, other: Any) -> int | bytes:
        return to_bytes(other)


class LeaseId(_Target):
    """Compare the ID of the lease attached to a key (0 for none). Accepts a lease or an int."""

    _target = 4

    def _operand(self, other: Any) -> int | bytes:
        return lease_id(other)


# ----------------------------------------------------------------------------------------- ops


class Op:
    """Base class of transaction operations."""

    __slots__ = ()

    def to_pb(self) -> pb.RequestOp:
        """The ``etcdserverpb.RequestOp`` message."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, init=False)
class Put(Op):
    """Put ``value`` at ``key`` (optionally attached to ``lease``). Result: prev KeyValue/None."""

    key: bytes
    value: bytes
    lease: int
    prev_kv: bool

    def __init__(
        self, key: KeyLike, value: KeyLike, lease: object = None, prev_kv: bool = False
    ) -> None:
        object.__setattr__(self, "key", to_bytes(key))
        object.__setattr__(self, "value", to_bytes(value))
        object.__setattr__(self, "lease", lease_id(lease))
        object.__setattr__(self, "prev_kv", prev_kv)

    def to_pb(self) -> pb.RequestOp:
        """The ``etcdserverpb.RequestOp`` message."""
        return pb.RequestOp(
            request_put=pb.PutRequest(
                key=self.key, value=self.value, lease=self.lease, prev_kv=self.prev_kv
            )
        )


@dataclass(frozen=True, slots=True, init=False)
class Get(Op):
    """Read a key, a range or a prefix. Result: ``list[KeyValue]``.

    Takes the same options as :meth:`AsyncClient.range` (``limit``, ``revision``, ``sort``,
    ``keys_only``, ``count_only``, ``min/max_create/mod_revision``, ``serializable``).
    """

    key: bytes
    range_end: bytes
    options: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        key: KeyLike,
        range_end: KeyLike | None = None,
        *,
        prefix: bool = False,
        **options: Any,
    ) -> None:
        k, e = key_range(key, range_end, prefix)
        object.__setattr__(self, "key", k)
        object.__setattr__(self, "range_end", e)
        object.__setattr__(self, "options", options)

    def to_pb(self) -> pb.RequestOp:
        """The ``etcdserverpb.RequestOp`` message."""
        opts = dict(self.options)
        order, target = sort_spec(opts.pop("sort", None))
        req = pb.RangeRequest(
            key=self.key,
            range_end=self.range_end,
            sort_order=pb.RangeRequestSortOrder(order),
            sort_target=pb.RangeRequestSortTarget(target),
            **opts,
        )
        return pb.RequestOp(request_range=req)


@dataclass(frozen=True, slots=True, init=False)
class Delete(Op):
    """Delete a key, a range or a prefix. Result: count, or ``list[KeyValue]`` with prev_kv."""

    key: bytes
    range_end: bytes
    prev_kv: bool

    def __init__(
        self,
        key: KeyLike,
        range_end: KeyLike | None = None,
        *,
        prefix: bool = False,
        prev_kv: bool = False,
    ) -> None:
        k, e = key_range(key, range_end, prefix)
        object.__setattr__(self, "key", k)
        object.__setattr__(self, "range_end", e)
        object.__setattr__(self, "prev_kv", prev_kv)

    def to_pb(self) -> pb.RequestOp:
        """The ``etcdserverpb.RequestOp`` message."""
        return pb.RequestOp(
            request_delete_range=pb.DeleteRangeRequest(
                key=self.key, range_end=self.range_end, prev_kv=self.prev_kv
            )
        )


@dataclass(frozen=True, slots=True, init=False)
class Txn(Op):
    """A nested transaction. Result: a nested ``TxnResult`` ``(succeeded, results)``."""

    compare: tuple[Compare, ...]
    success: tuple[Op, ...]
    failure: tuple[Op, ...]

    def __init__(
        self,
        compare: list[Compare] | tuple[Compare, ...] = (),
        success: list[Op] | tuple[Op, ...] = (),
        failure: list[Op] | tuple[Op, ...] = (),
    ) -> None:
        object.__setattr__(self, "compare", tuple(compare))
        object.__setattr__(self, "success", tuple(success))
        object.__setattr__(self, "failure", tuple(failure))

    def request(self) -> pb.TxnRequest:
        """The ``etcdserverpb.TxnRequest`` message."""
        for c in self.compare:
            if not isinstance(c, Compare):
                raise TypeError(f"compare entries must be Compare (e.g. Value(k) == v), got {c!r}")
        for o in (*self.success, *self.failure):
            if not isinstance(o, Op):
                raise TypeError(f"txn operations must be Put/Get/Delete/Txn, got {o!r}")
        return pb.TxnRequest(
            compare=[c.to_pb() for c in self.compare],
            success=[o.to_pb() for o in self.success],
            failure=[o.to_pb() for o in self.failure],
        )

    def to_pb(self) -> pb.RequestOp:
        """The ``etcdserverpb.RequestOp`` message."""
        return pb.RequestOp(request_txn=self.request())
