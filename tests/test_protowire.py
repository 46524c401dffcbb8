"""coord._protowire, the shared protobuf wire format: primitives and field numbers.

The field-number classes are checked against betterproto2's metadata (generated from proto/),
so a misnumbered constant fails here and not as a silently wrong byte in a response.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hypothesis.strategies as st
import pytest
from betterproto2 import ProtoClassMetadata
from hypothesis import given

from coord import _protowire as pw
from coord._pb import etcdserverpb as pb
from coord._pb import mvccpb

FIELD_CLASSES = [
    (pw.ResponseHeaderField, pb.ResponseHeader),
    (pw.KeyValueField, mvccpb.KeyValue),
    (pw.EventField, mvccpb.Event),
    (pw.RangeRequestField, pb.RangeRequest),
    (pw.RangeResponseField, pb.RangeResponse),
    (pw.PutRequestField, pb.PutRequest),
    (pw.PutResponseField, pb.PutResponse),
    (pw.DeleteRangeRequestField, pb.DeleteRangeRequest),
    (pw.DeleteRangeResponseField, pb.DeleteRangeResponse),
    (pw.ResponseOpField, pb.ResponseOp),
    (pw.TxnResponseField, pb.TxnResponse),
    (pw.WatchResponseField, pb.WatchResponse),
]


@pytest.mark.parametrize(
    ("names", "message"), FIELD_CLASSES, ids=[c.__name__ for c, _ in FIELD_CLASSES]
)
def test_field_numbers_match_the_generated_messages(names: type, message: type) -> None:
    # getattr: mypy cannot bind the classproperty's type[Self] on a plain type
    meta: ProtoClassMetadata = getattr(message, "_betterproto")  # noqa: B009
    numbers = {name.upper(): f.number for name, f in meta.meta_by_field_name.items()}
    ours = {k: v for k, v in vars(names).items() if k.isupper()}
    # the generated code renames a field named like a builtin (Event.type -> type_)
    assert ours == {k.rstrip("_"): v for k, v in numbers.items()}


@given(st.integers(-(2**63), 2**64 - 1))
def test_varint_round_trip_and_betterproto(n: int) -> None:
    data = pw.encode_varint(n)
    value, pos = pw.decode_varint(data, 0)
    assert pos == len(data)
    assert pw.decode_varint_checked(data, 0, len(data)) == (value, pos)
    assert (pw.to_int64(value) if n < 2**63 else value) == n
    if n < 2**63:
        assert pw.int_field(3, n) == bytes(pb.ResponseHeader(revision=n))


def test_checked_varint_names_the_offset() -> None:
    with pytest.raises(ValueError, match="truncated varint at offset 3"):
        pw.decode_varint_checked(b"\x00\x00\xff", 2, 3)
    with pytest.raises(ValueError, match="varint too long"):
        pw.decode_varint_checked(b"\xff" * 11, 0, 11)


def test_fields_and_skipping() -> None:
    msg = pb.RangeRequest(key=b"k", limit=5, serializable=True)
    assert (
        pw.bytes_field(pw.RangeRequestField.KEY, b"k")
        + pw.int_field(pw.RangeRequestField.LIMIT, 5)
        + pw.int_field(pw.RangeRequestField.REVISION, 0)
        + pw.bool_field(pw.RangeRequestField.SERIALIZABLE, True)
        + pw.bool_field(pw.RangeRequestField.KEYS_ONLY, False)
    ) == bytes(msg)
    data = bytes(msg)
    pos, seen = 0, []
    while pos < len(data):
        key, pos = pw.decode_varint(data, pos)
        seen.append(key >> 3)
        pos = pw.skip_field(data, pos, key & 7)
    assert seen == [1, 3, 7]
    assert pw.skip_field(b"\x00" * 8, 0, pw.I64) == 8
    assert pw.skip_field(b"\x00" * 4, 0, pw.I32) == 4
    with pytest.raises(ValueError, match="unsupported wire type 3"):
        pw.skip_field(b"", 0, 3)


def test_imports_nothing_else_of_coord(tmp_path: Path) -> None:
    code = (
        "import sys, coord._protowire; "
        "print(*sorted(m for m in sys.modules if m.startswith('coord')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert [m for m in out if m not in ("coord", "coord._checkout", "coord._protowire")] == []
