"""etcd's JSON mapping of protobuf messages (protojson as grpc-gateway configures it), generic.

Theory of operation: a betterproto2 message class describes its fields in ``cls._betterproto``
(number, proto type, repeated/optional/oneof group, and the Python class of message and enum
fields). :func:`to_json` and :func:`from_json` walk that description, so every etcd message is
mapped by the same ~100 lines instead of per-message code. The rules are the ones etcd's gateway
uses (grpc-gateway's jsonpb marshaler with OrigName and EmitDefaults off; docs/http.md):

* output keys are the **proto** field names (``create_revision``, ``peerURLs``, ``TTL``);
  betterproto2 renamed some (``peer_ur_ls``), :data:`~.protonames.PROTO_NAMES` restores them;
* input accepts the proto name, the lowerCamelCase JSON name (``rangeEnd``) and, for convenience,
  the Python attribute name; unknown keys are ignored (``DiscardUnknown``);
* ``bytes`` are standard base64 (input also accepts URL-safe and unpadded);
* 64-bit integers are JSON strings on output; input takes strings or numbers;
* enums are names on output; input takes names or numbers;
* zero values (0, "", false, empty lists, unset messages, the first enum value) are omitted, except
  for a oneof member that is set, which is always emitted (its presence is the information).

Malformed input raises :class:`JsonMappingError` (the gateway answers 400 / InvalidArgument).
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
from functools import cache
from typing import Any, TypeVar

import betterproto2

from coord._pb.message_pool import default_message_pool

from .protonames import PROTO_NAMES

__all__ = ["JsonMappingError", "from_json", "to_json"]

M = TypeVar("M", bound=betterproto2.Message)

_INT64 = frozenset(
    {
        betterproto2.TYPE_INT64,
        betterproto2.TYPE_UINT64,
        betterproto2.TYPE_SINT64,
        betterproto2.TYPE_FIXED64,
        betterproto2.TYPE_SFIXED64,
    }
)
_INT32 = frozenset(
    {
        betterproto2.TYPE_INT32,
        betterproto2.TYPE_UINT32,
        betterproto2.TYPE_SINT32,
        betterproto2.TYPE_FIXED32,
        betterproto2.TYPE_SFIXED32,
    }
)
_UNSIGNED = frozenset(
    {
        betterproto2.TYPE_UINT64,
        betterproto2.TYPE_FIXED64,
        betterproto2.TYPE_UINT32,
        betterproto2.TYPE_FIXED32,
    }
)
_FLOAT = frozenset({betterproto2.TYPE_DOUBLE, betterproto2.TYPE_FLOAT})


class JsonMappingError(ValueError):
    """The JSON does not describe a valid message of the expected type."""


class _Field:
    """What the mapping needs to know about one field of one message class."""

    __slots__ = (
        "cls",
        "group",
        "number",
        "optional",
        "proto_name",
        "proto_type",
        "py_name",
        "repeated",
    )

    def __init__(self, py_name: str, proto_name: str, meta: Any, cls: type | None) -> None:
        self.py_name = py_name
        self.proto_name = proto_name
        self.number: int = meta.number
        self.proto_type: str = meta.proto_type
        self.repeated: bool = meta.repeated
        self.optional: bool = meta.optional
        self.group: str | None = meta.group
        self.cls = cls


def _json_name(proto_name: str) -> str:
    """protoc's default json_name: drop underscores, upper-case the letter after each."""
    out: list[str] = []
    upper = False
    for ch in proto_name:
        if ch == "_":
            upper = True
        else:
            out.append(ch.upper() if upper else ch)
            upper = False
    return "".join(out)


@cache
def _fields(cls: type[betterproto2.Message]) -> tuple[tuple[_Field, ...], dict[str, _Field]]:
    """Fields of ``cls`` in field-number order, and a lookup by every accepted input key."""
    meta: Any = getattr(cls, "_betterproto")  # noqa: B009 - untyped classproperty
    url = default_message_pool.type_to_url.get(cls, "")
    renamed = PROTO_NAMES.get(url.rpartition("/")[2], {})
    fields: list[_Field] = []
    by_key: dict[str, _Field] = {}
    for number in sorted(meta.field_name_by_number):
        py = meta.field_name_by_number[number]
        fmeta = meta.meta_by_field_name[py]
        if fmeta.map_meta is not None:  # etcd's protos have no maps
            raise TypeError(f"map field {cls.__name__}.{py} is not supported")
        f = _Field(py, renamed.get(py, py), fmeta, meta.cls_by_field.get(py))
        fields.append(f)
        for key in (py, f.proto_name, _json_name(f.proto_name)):
            by_key.setdefault(key, f)
    return tuple(fields), by_key


# ---------------------------------------------------------------------------------------- output


def to_json(msg: betterproto2.Message) -> dict[str, Any]:
    """The JSON object (a dict ready for ``json.dumps``) etcd's gateway would print for ``msg``."""
    out: dict[str, Any] = {}
    for f in _fields(type(msg))[0]:
        value = getattr(msg, f.py_name)
        if f.repeated:
            if value:
                out[f.proto_name] = [_scalar_out(f, v) for v in value]
        elif f.group is not None or f.optional:
            if value is not None:
                out[f.proto_name] = _scalar_out(f, value)
        elif f.proto_type == betterproto2.TYPE_MESSAGE:
            if value is not None:
                out[f.proto_name] = to_json(value)
        elif value:  # proto3 implicit presence: zero values are omitted
            out[f.proto_name] = _scalar_out(f, value)
    return out


def _scalar_out(f: _Field, value: Any) -> Any:
    t = f.proto_type
    if t == betterproto2.TYPE_MESSAGE:
        return to_json(value)
    if t in _INT64:
        return str(int(value))
    if t == betterproto2.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if t == betterproto2.TYPE_ENUM:
        name = getattr(value, "name", None)
        if (
            isinstance(value, enum.Enum)
            and isinstance(name, str)
            and not name.startswith("UNKNOWN(")
        ):
            return name
        return int(value)
    if t in _FLOAT:
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    return value


# ----------------------------------------------------------------------------------------- input


def from_json(cls: type[M], obj: Any) -> M:
    """Build a ``cls`` message from a decoded JSON value; raise :class:`JsonMappingError`."""
    if not isinstance(obj, dict):
        raise JsonMappingError(
            f"cannot unmarshal {_json_type(obj)} into Go value of type {_go_name(cls)}"
        )
    by_key = _fields(cls)[1]
    kwargs: dict[str, Any] = {}
    for key, value in obj.items():
        f = by_key.get(key)
        if f is None or value is None:  # unknown keys are discarded; null means "default"
            continue
        if f.py_name in kwargs:
            raise JsonMappingError(f"field {f.proto_name} is set twice")
        if f.repeated:
            if not isinstance(value, list):
                raise JsonMappingError(
                    f"field {f.proto_name}: expected a JSON array, got {_json_type(value)}"
                )
            kwargs[f.py_name] = [_scalar_in(f, v) for v in value]
        else:
            kwargs[f.py_name] = _scalar_in(f, value)
    groups = {by_key[k].group for k in kwargs if by_key[k].group is not None}
    for group in groups:
        members = [k for k in kwargs if by_key[k].group == group]
        if len(members) > 1:
            raise JsonMappingError(f"oneof {group} has more than one member set: {members}")
    return cls(**kwargs)


def _scalar_in(f: _Field, value: Any) -> Any:
    t = f.proto_type
    name = f.proto_name
    if t == betterproto2.TYPE_MESSAGE:
        assert f.cls is not None
        return from_json(f.cls, value)
    if t in _INT64 or t in _INT32:
        n = _int_in(name, value)
        bits = 64 if t in _INT64 else 32
        lo, hi = (0, 2**bits - 1) if t in _UNSIGNED else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if not lo <= n <= hi:
            raise JsonMappingError(f"field {name}: {n} is out of range")
        return n
    if t == betterproto2.TYPE_BOOL:
        if not isinstance(value, bool):
            raise JsonMappingError(f"field {name}: expected true or false, got {value!r}")
        return value
    if t == betterproto2.TYPE_STRING:
        if not isinstance(value, str):
            raise JsonMappingError(f"field {name}: expected a string, got {_json_type(value)}")
        return value
    if t == betterproto2.TYPE_BYTES:
        return _bytes_in(name, value)
    if t == betterproto2.TYPE_ENUM:
        assert f.cls is not None
        return _enum_in(name, f.cls, value)
    if t in _FLOAT:
        if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
            return float(value.replace("Infinity", "inf"))
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise JsonMappingError(f"field {name}: expected a number, got {_json_type(value)}")
        try:
            return float(value)
        except ValueError:
            raise JsonMappingError(f"field {name}: invalid number {value!r}") from None
    raise JsonMappingError(f"field {name}: unsupported type {t}")


def _int_in(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise JsonMappingError(f"field {name}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            try:
                f = float(value)
            except ValueError:
                f = math.nan
            if f.is_integer():
                return int(f)
    raise JsonMappingError(f"field {name}: invalid integer {value!r}")


def _bytes_in(name: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise JsonMappingError(f"field {name}: expected a base64 string, got {_json_type(value)}")
    s = value.strip().rstrip("=")
    s += "=" * (-len(s) % 4)
    try:
        if "-" in s or "_" in s:
            return base64.urlsafe_b64decode(s.encode("ascii"))
        return base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise JsonMappingError(f"field {name}: invalid base64 {value!r}") from None


def _enum_in(name: str, cls: type, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return cls[value]  # type: ignore[index]
        except KeyError:
            raise JsonMappingError(
                f"field {name}: invalid value {value!r} for enum {cls.__name__}"
            ) from None
    if isinstance(value, int) and not isinstance(value, bool):
        return cls(value)
    raise JsonMappingError(f"field {name}: invalid enum value {value!r}")


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def _go_name(cls: type) -> str:
    url = default_message_pool.type_to_url.get(cls, "")
    return url.rpartition("/")[2] or cls.__name__
