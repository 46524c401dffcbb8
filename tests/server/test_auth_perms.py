"""Key permissions (server/auth/perms.py) against a brute-force model of etcd's interval rules.

The model knows nothing of merging or bisecting: a request is allowed iff every key it names
is permitted by at least one single permission of the right kind. It enumerates keys from a
finite universe U: every string over the alphabet up to length 5, while keys and range ends
are at most 3 long. That is exact, not a sample: the keys of a request range that no
permission names form a union of half-open intervals (the range minus the permissions'
intervals), so if there is one, the least of them is the request's begin or the end of some
permission (its ``range_end``, or ``key + b"\\0"`` for a single-key permission); all of those
are at most 4 long, hence in U. Strings of U above every request and permission bound
(length 4 and 5) are never needed for exactness, only harmless.

Empty keys follow etcd's BytesAffineComparable, in which b"" sorts after every key: a
permission with an empty key names nothing, and so nothing is granted on the empty key.
An empty request range (``range_end <= key``, neither b"" nor b"\\0") is allowed iff its
``key`` is (coord's decision, see perms.py).
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
    if not begin:
        return False  # b"" is BytesAffineComparable's +infinity: [+inf, ...) is empty
    if not end:
        return key == begin
    if end == b"\x00":
        return key >= begin
    return begin <= key < end


def model_allowed(perms: list[Perm], key: bytes, range_end: bytes, write: bool) -> bool:
    kinds = (WRITE, READWRITE) if write else (READ, READWRITE)
    mine = [p for p in perms if p[0] in kinds]
    if not range_end or (range_end != b"\x00" and range_end <= key):
        wanted = [key]  # a single key, or an empty range: the key itself (coord's rule)
    elif range_end == b"\x00":
        wanted = [k for k in UNIVERSE if k >= key]
    else:
        wanted = [k for k in UNIVERSE if key <= k < range_end]
    return all(any(contains(p, k) for p in mine) for k in wanted)


keys = st.lists(st.sampled_from(ALPHABET), max_size=3).map(b"".join)
ends = st.one_of(st.just(b""), st.just(b"\x00"), keys)
perms_st = st.lists(st.tuples(st.sampled_from([READ, WRITE, READWRITE]), keys, ends), max_size=6)


@settings(max_examples=4000, deadline=None, derandomize=True, database=None)
@given(perms=perms_st, key=keys, range_end=ends, write=st.booleans())
def test_permissions_match_the_model(
    perms: list[Perm], key: bytes, range_end: bytes, write: bool
) -> None:
    kp = KeyPermissions.build(perms)
    kp._check()
    assert kp.allowed(key, range_end, write) == model_allowed(perms, key, range_end, write)


def test_prefix_permission() -> None:
    kp = KeyPermissions.build([(READWRITE, b"/app/", b"/app0")])
    kp._check()
    assert kp.allowed(b"/app/x", b"", False)
    assert kp.allowed(b"/app/", b"/app0", True)  # the prefix itself
    assert kp.allowed(b"/app/a", b"/app/b", True)
    assert not kp.allowed(b"/ap", b"", False)
    assert not kp.allowed(b"/app0", b"", False)
    assert not kp.allowed(b"/app/", b"/b", False)
    assert not kp.allowed(b"/app/", b"/app0\x00", False)  # one key past the prefix
    assert not kp.allowed(b"/app/", b"\x00", False)  # from-key runs past the prefix


def test_single_key_permission() -> None:
    kp = KeyPermissions.build([(READ, b"k", b"")])
    kp._check()
    assert kp.allowed(b"k", b"", False)
    assert kp.allowed(b"k", b"k\x00", False)  # the range holding just "k"
    assert not kp.allowed(b"k", b"k\x01", False)
    assert not kp.allowed(b"k\x00", b"", False)
    assert not kp.allowed(b"j", b"", False)
    assert not kp.allowed(b"k", b"\x00", False)


def test_read_write_and_readwrite_are_separate() -> None:
    kp = KeyPermissions.build([(READ, b"/r", b""), (WRITE, b"/w", b""), (READWRITE, b"/x", b"")])
    kp._check()
    assert kp.allowed(b"/r", b"", False)
    assert not kp.allowed(b"/r", b"", True)
    assert kp.allowed(b"/w", b"", True)
    assert not kp.allowed(b"/w", b"", False)
    assert kp.allowed(b"/x", b"", True)
    assert kp.allowed(b"/x", b"", False)
    assert not KeyPermissions.build([(7, b"/r", b"")]).allowed(b"/r", b"", False)  # unknown type


def test_touching_intervals_cover_a_range_across_them_and_a_gap_does_not() -> None:
    kp = KeyPermissions.build([(READ, b"b", b"c"), (READ, b"a", b"b")])
    kp._check()
    assert kp.allowed(b"a", b"c", False)
    gap = KeyPermissions.build([(READ, b"a", b"b"), (READ, b"b\x00", b"c")])
    gap._check()
    assert not gap.allowed(b"a", b"c", False)
    assert gap.allowed(b"a", b"b", False)
    assert gap.allowed(b"b\x00", b"c", False)
    single = KeyPermissions.build([(READ, b"a", b"b"), (READ, b"b", b""), (READ, b"b\x00", b"c")])
    single._check()
    assert single.allowed(b"a", b"c", False)  # the single key "b" fills the gap exactly
    # a READ and a WRITE interval touching do not cover the range for either kind
    mixed = KeyPermissions.build([(READ, b"a", b"b"), (WRITE, b"b", b"c")])
    assert not mixed.allowed(b"a", b"c", False)
    assert not mixed.allowed(b"a", b"c", True)


def test_from_key_permissions() -> None:
    kp = KeyPermissions.build([(READWRITE, b"m", b"\x00")])
    kp._check()
    assert kp.allowed(b"m", b"\x00", False)
    assert kp.allowed(b"z", b"", True)
    assert kp.allowed(b"m", b"\xff\xff\xff", True)
    assert not kp.allowed(b"a", b"\x00", False)
    assert not kp.allowed(b"l", b"n", False)
    # etcdctl's "every key": key b"\0", range_end b"\0"
    everything = KeyPermissions.build([(READ, b"\x00", b"\x00")])
    everything._check()
    assert everything.allowed(b"\x00", b"\x00", False)
    assert everything.allowed(b"any", b"", False)
    assert everything.allowed(b"a", b"z", False)
    assert not everything.allowed(b"a", b"", True)


def test_empty_keys_follow_bytes_affine_order() -> None:
    """etcd's b"" is +infinity: a permission on it names nothing, and the empty key is never
    granted (etcd refuses both elsewhere; the rules still agree)."""
    empty = KeyPermissions.build([(READWRITE, b"", b"\x00"), (READ, b"", b""), (READ, b"", b"z")])
    empty._check()
    assert not empty.allowed(b"a", b"", False)
    assert not empty.allowed(b"\x00", b"\x00", False)
    everything = KeyPermissions.build([(READWRITE, b"\x00", b"\x00")])
    assert not everything.allowed(b"", b"", False)
    assert not everything.allowed(b"", b"\x00", True)


def test_empty_request_range_is_its_key() -> None:
    kp = KeyPermissions.build([(READ, b"a", b"z")])
    assert kp.allowed(b"m", b"c", False)  # range_end before key: "m" is covered
    assert kp.allowed(b"m", b"m", False)
    assert not kp.allowed(b"zz", b"a", False)
    assert not kp.allowed(b"m", b"c", True)
