"""``unwrap``: a message field the protocol makes optional (betterproto2 types every message
field as ``X | None``), where the test knows it is set; a ``None`` fails the test."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["unwrap"]

T = TypeVar("T")


def unwrap(value: T | None) -> T:
    """``value``, which must not be ``None``."""
    if value is None:
        raise AssertionError("expected a value, got None")
    return value
