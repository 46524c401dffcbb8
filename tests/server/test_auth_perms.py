"""Key permissions (server/auth/perms.py) against a brute-force model of etcd's interval rules.

The model knows nothing of merging or bisecting: a request is allowed iff every key it names
is permitted by at least one single permission of the right kind. It enumerates keys from a
finite universe U: every string over the alphabet up to length 5, while keys and range ends
are at most 3 long. That is exact, not a sample: if a request range is not covered, its first
uncovered key is the request's begin or the end of some permission (a permission's end, or
``key + b"\\0"`` for a single-key permission), and all of those lie in U.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from coord.server.auth.perms import READ, READWRITE, WRITE, KeyPermissions

ALPHABET = [b"\x00", b"a", b"b", b"\xff"]
UNIVERSE = sorted(b"".join(p) for n in range(6) for p in itertools.product(ALPHABET, repeat=n))

Perm = tuple[int, bytes, bytes]


def contains(perm: Perm, key: bytes) -> bool:
    """Does one permission (etcd's rules) name ``key``?"""
    _t, begin, end = perm
    if not end:
        return key == begin
    if end == b"\x00":
        return key >= begin
    return begin <= key < end


def model_allowed(perms: list[Perm], key: bytes, range_end: bytes, write: bool) -> bool:
    kinds = (WRITE, READWRITE) if write else (READ, READWRITE)
    mine = [p for p in perms if p[0] in kinds]
    if not range_end or (range_end != b"\x00" and range_end <= key):
        wanted = [key]  # a single key, or an empty range: the key itself (perms.py's rule)
    elif range_end == b"\x00":
        wanted = [k for k in UNIVERSE if k >= key]
    else:
        wanted = [k for k in UNIVERSE if key <= k < range_end]
    return all(any(contains(p, k) for p in mine) for k in wanted)


keys = st.binary(max_size=3).map(lambda b: bytes(ALPHABET[x % 4][0] for x in b))
ends = st.one_of(st.just(b""), st.just(b"\x00"), keys)
perms_st = st.lists(st.tuples(st.sampled_from([READ, WRITE, READWRITE]), keys, ends), max_size=6)


@settings(max_examples=3000, deadline=None)
@given(perms=perms_st, key=keys, range_end=ends, write=st.booleans())
def test_permissions_match_the_model(
    perms: list[Perm], key: bytes, range_end: bytes, write: bool
) -> None:
    kp = KeyPermissions.build(perms)
    kp._check()
    assert kp.allowed(key, range_end, write) == model_allowed(perms, key, range_end, write)


def test_prefix_permission() -> None:
    kp = KeyPermissions.build([(READWRITE, b"/app/", b"/app0")])
    assert kp.allowed(b"/app/x", b"", False)
    assert kp.allowed(b"/app/", b"/app0", True)  # the prefix itself
    assert kp.allowed(b"/app/a", b"/app/b", True)
    assert not kp.allowed(b"/ap", b"", False)
    assert not kp.allowed(b"/app0", b"", False)
    assert not kp.allowed(b"/app/", b"/b", False)
    assert not kp.allowed(b"/app/", b"\x00", False)  # from-key runs past the prefix


def test_read_and_write_are_separate() -> None:
    kp = KeyPermissions.build([(READ, b"/r", b""), (WRITE, b"/w", b"")])
    assert kp.allowed(b"/r", b"", False)
    assert not kp.allowed(b"/r", b"", True)
    assert kp.allowed(b"/w", b"", True)
    assert not kp.allowed(b"/w", b"", False)


def test_touching_intervals_cover_a_range_across_them_and_a_gap_does_not() -> None:
    kp = KeyPermissions.build([(READ, b"a", b"b"), (READ, b"b", b"c")])
    assert kp.allowed(b"a", b"c", False)
    gap = KeyPermissions.build([(READ, b"a", b"b"), (READ, b"b\x00", b"c")])
    assert not gap.allowed(b"a", b"c", False)
    single = KeyPermissions.build([(READ, b"a", b"b"), (READ, b"b", b""), (READ, b"b\x00", b"c")])
    assert single.allowed(b"a", b"c", False)  # the single key "b" fills the gap exactly


def test_from_key_permission_covers_everything_after() -> None:
    kp = KeyPermissions.build([(READWRITE, b"m", b"\x00")])
    assert kp.allowed(b"m", b"\x00", False)
    assert kp.allowed(b"z", b"", True)
    assert not kp.allowed(b"a", b"\x00", False)
    everything = KeyPermissions.build([(READ, b"", b"\x00")])
    assert everything.allowed(b"", b"\x00", False)
