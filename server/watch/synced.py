"""The synced watchers, grouped so that a write costs O(groups), not O(watchers).

Theory of operation
-------------------
A synced watcher has seen every revision up to the store's current one (etcd's synced
watcherGroup). Watchers with the same *shape* (range, filters, prev_kv, fragment,
progress_notify) want exactly the same events, so they form one :class:`Group`; within a group
they are kept per stream. For each revision the hub asks each group once whether it wants a
change and encodes the event once; every stream then gets one queue entry for all its
watchers of that group: the events, plus the tuple of their encoded watch ids
(:meth:`Group.ids`, cached until the group's members on that stream change). Turning one entry
into a response per watcher is a bytes concatenation each, done by the stream's sender.

Watchers created with a start revision beyond the next one wait in a heap (``waiting``) and
join their group when the store reaches that revision (:meth:`SyncedIndex.promote`), so that
groups hold only watchers that want the very next revision.

Invariants (:meth:`SyncedIndex._check`): every group is non-empty, indexed under its key (a
single-key shape) or among the range groups, and holds watchers of its shape that are synced and
not waiting; a cached id tuple lists exactly its stream's members; every waiting watcher is in
the heap and its start revision is beyond the store's.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from itertools import count
from typing import Any, Generic, Protocol, TypeVar

from coord.server.mvcc import KeyVersion

__all__ = ["Filter", "Group", "Member", "Shape", "SyncedIndex", "wants"]


Shape = tuple[bytes, bytes | None, bool, bool, bool, bool, bool]


class Member(Protocol):
    """What the index needs of a watcher (the hub's ``_Watcher``)."""

    waiting: bool

    @property
    def id(self) -> int: ...
    @property
    def id_field(self) -> bytes: ...
    @property
    def stream(self) -> Hashable: ...
    @property
    def shape(self) -> Shape: ...
    @property
    def start_rev(self) -> int: ...


W = TypeVar("W", bound=Member)


class Filter(Protocol):
    """A key range (``end`` None: one key; b"": no upper bound) and event filters."""

    @property
    def key(self) -> bytes: ...
    @property
    def end(self) -> bytes | None: ...
    @property
    def no_put(self) -> bool: ...
    @property
    def no_delete(self) -> bool: ...


def wants(f: Filter, v: KeyVersion) -> bool:
    """Does the change ``v`` concern ``f`` (range and filters)? Watchers and groups use it as
    their ``wants`` method."""
    k = v.key
    end = f.end
    if end is None:
        if k != f.key:
            return False
    elif k < f.key or (end and k >= end):
        return False
    return not (f.no_delete if v.version == 0 else f.no_put)


class Group(Generic[W]):
    """The synced watchers of one shape, per stream (see the module docstring)."""

    __slots__ = (
        "_ids",
        "end",
        "fragment",
        "key",
        "members",
        "no_delete",
        "no_put",
        "prev_kv",
        "progress_notify",
        "shape",
    )

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        (
            self.key,
            self.end,
            self.no_put,
            self.no_delete,
            self.prev_kv,
            self.fragment,
            self.progress_notify,
        ) = shape
        self.members: dict[Any, dict[int, W]] = {}
        self._ids: dict[Any, tuple[bytes, ...]] = {}

    wants = wants

    def ids(self, stream: Any) -> tuple[bytes, ...]:
        """The encoded watch ids of this group's watchers on ``stream``."""
        ids = self._ids.get(stream)
        if ids is None:
            ids = self._ids[stream] = tuple(w.id_field for w in self.members[stream].values())
        return ids

    def add(self, w: W) -> None:
        self.members.setdefault(w.stream, {})[w.id] = w
        self._ids.pop(w.stream, None)

    def remove(self, w: W) -> None:
        ws = self.members[w.stream]
        del ws[w.id]
        self._ids.pop(w.stream, None)
        if not ws:
            del self.members[w.stream]


class SyncedIndex(Generic[W]):
    """Groups of synced watchers by key and by range, plus the ones waiting for a future
    start revision."""

    def __init__(self) -> None:
        self.groups: dict[Shape, Group[W]] = {}
        self.by_key: dict[bytes, list[Group[W]]] = {}  # single-key groups
        self.ranges: list[Group[W]] = []
        self._waiting: list[tuple[int, int, W]] = []  # heap of (start_rev, seq, watcher)
        self._seq = count()

    def __bool__(self) -> bool:
        return bool(self.groups or self._waiting)

    def add(self, w: W, rev: int) -> None:
        """Index ``w`` as synced at store revision ``rev``."""
        if w.start_rev > rev + 1:
            w.waiting = True
            heapq.heappush(self._waiting, (w.start_rev, next(self._seq), w))
            return
        g = self.groups.get(w.shape)
        if g is None:
            g = self.groups[w.shape] = Group[W](w.shape)
            if g.end is None:
                self.by_key.setdefault(g.key, []).append(g)
            else:
                self.ranges.append(g)
        g.add(w)

    def remove(self, w: W) -> None:
        """Take ``w`` out (a waiting one stays in the heap, ignored, until its turn)."""
        if w.waiting:
            w.waiting = False
            return
        g = self.groups[w.shape]
        g.remove(w)
        if not g.members:
            del self.groups[w.shape]
            if g.end is None:
                gs = self.by_key[g.key]
                gs.remove(g)
                if not gs:
                    del self.by_key[g.key]
            else:
                self.ranges.remove(g)

    def promote(self, rev: int) -> None:
        """Move the waiting watchers whose start revision is ``rev`` or earlier into groups."""
        heap = self._waiting
        while heap and heap[0][0] <= rev:
            w = heapq.heappop(heap)[2]
            if w.waiting:
                w.waiting = False
                self.add(w, rev)

    def contains(self, w: W) -> bool:
        if w.waiting:
            return any(e[2] is w for e in self._waiting)
        g = self.groups.get(w.shape)
        return g is not None and g.members.get(w.stream, {}).get(w.id) is w

    def matching(self, changes: list[KeyVersion]) -> Iterator[tuple[Group[W], list[KeyVersion]]]:
        """Each group that wants some of ``changes`` (one revision's), with those changes in
        order."""
        by_key = self.by_key
        if by_key:
            hit: dict[Group[W], list[KeyVersion]] = {}
            for v in changes:
                for g in by_key.get(v.key, ()):
                    if g.wants(v):
                        hit.setdefault(g, []).append(v)
            yield from hit.items()
        for g in list(self.ranges):  # a group may leave while its changes are pushed
            vs = [v for v in changes if g.wants(v)]
            if vs:
                yield g, vs

    def synced_count(self) -> int:
        waiting = sum(1 for e in self._waiting if e[2].waiting)
        return waiting + sum(len(ws) for g in self.groups.values() for ws in g.members.values())

    def _check(self, rev: int) -> None:
        keyed = [g for gs in self.by_key.values() for g in gs]
        assert len(keyed) + len(self.ranges) == len(self.groups)
        for g in self.groups.values():
            assert self.groups[g.shape] is g
            assert g.members
            if g.end is None:
                assert g in self.by_key[g.key]
            else:
                assert g in self.ranges
            for stream, ws in g.members.items():
                assert ws
                for wid, w in ws.items():
                    assert w.id == wid
                    assert w.stream is stream
                    assert w.shape == g.shape
                    assert not w.waiting
                if stream in g._ids:
                    assert sorted(g._ids[stream]) == sorted(w.id_field for w in ws.values())
            assert set(g._ids) <= set(g.members)
        for start, _, w in self._waiting:
            if w.waiting:
                assert start == w.start_rev > rev
