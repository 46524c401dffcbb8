"""etcd's watch guarantees, checked on recorded watch streams.

Theory of operation
-------------------
A watcher's record is a list of segments (one per server-side watch: the first from revision
1, each later one created at ``last revision + 1`` after an explicit resume or a failure, or at
the compaction revision when the resume point was compacted, which excuses that gap). The
*reference* is a fresh watch opened after the run (healed) from the oldest retained revision
to the end, and the acknowledged writes of the register workload are a second, independent
reference that survives compaction. Checked per watcher (etcd's documented guarantees):

* **ordered**: event revisions never decrease along the stream;
* **unique**: no event (revision, key) is delivered twice;
* **atomic**: the events of one revision arrive in one response (never split), and as many
  as the reference has for that revision;
* **reliable**: no gap: every reference event and every acknowledged write inside the
  revisions the watcher covered (minus excused compaction gaps) was delivered, equal to the
  reference event (value, create/mod revision, version, prev_kv);
* **resumable**: a segment starts exactly where the previous one left off (checked through
  the gap and duplicate rules across segment boundaries);
* **prev_kv**: along a gap-free stretch, each event's ``prev_kv`` is the key's previous event
  (None after a delete), and versions/create revisions follow from it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .workloads import WatchedEvent, WatchSegment

__all__ = ["WatchResult", "check_watch", "reference_events"]


@dataclass
class WatchResult:
    name: str
    events: int = 0
    responses: int = 0
    segments: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        head = (
            f"watch {self.name}: {self.segments} segments, {self.responses} responses, "
            f"{self.events} events, {len(self.violations)} violations"
        )
        return "\n".join([head, *(f"  {v}" for v in self.violations[:20])])


def reference_events(segments: Sequence[WatchSegment]) -> list[WatchedEvent]:
    return [e for s in segments for r in s.responses for e in r.events]


def _excused(segments: Sequence[WatchSegment]) -> list[tuple[int, int]]:
    """Revision ranges a watcher may have missed because its resume point was compacted."""
    out = []
    for prev, seg in itertools.pairwise(segments):
        if prev.ended.startswith("compacted:"):
            lo = prev.responses[-1].revision + 1 if prev.responses else prev.start
            out.append((lo, seg.start - 1))
    return out


def check_watch(
    name: str,
    segments: Sequence[WatchSegment],
    reference: Sequence[WatchedEvent] = (),
    ref_range: tuple[int, int] = (0, -1),
    acked: Sequence[tuple[str, str, int]] = (),
) -> WatchResult:
    """Check one watcher. ``reference`` covers revisions ``ref_range`` (inclusive);
    ``acked`` are acknowledged writes ``(key, value, revision)``."""
    res = WatchResult(name, segments=len(segments))
    v = res.violations
    excused = _excused(segments)

    def is_excused(rev: int) -> bool:
        return any(lo <= rev <= hi for lo, hi in excused)

    seen: dict[tuple[int, str], WatchedEvent] = {}
    resp_of_rev: dict[int, int] = {}
    count_of_rev: dict[int, int] = {}
    last_rev = 0
    prev_by_key: dict[str, WatchedEvent] = {}
    n_resp = 0
    covered_hi = 0
    for si, seg in enumerate(segments):
        if si > 0 and is_excused(seg.start - 1):
            prev_by_key.clear()  # a gap: prev_kv can't be followed across it
        for resp in seg.responses:
            n_resp += 1
            covered_hi = max(covered_hi, resp.revision)
            for e in resp.events:
                res.events += 1
                if e.mod_revision < last_rev:
                    v.append(
                        f"ordered: revision {e.mod_revision} ({e.type} {e.key}) after {last_rev}"
                    )
                if e.mod_revision < seg.start:
                    v.append(
                        f"resumable: segment from {seg.start} delivered revision {e.mod_revision}"
                    )
                last_rev = max(last_rev, e.mod_revision)
                k = (e.mod_revision, e.key)
                if k in seen:
                    v.append(f"unique: {e.type} {e.key}@{e.mod_revision} delivered twice")
                    continue
                seen[k] = e
                first = resp_of_rev.setdefault(e.mod_revision, n_resp)
                if first != n_resp:
                    v.append(f"atomic: events of revision {e.mod_revision} split across responses")
                count_of_rev[e.mod_revision] = count_of_rev.get(e.mod_revision, 0) + 1
                before = prev_by_key.get(e.key)
                if before is not None:
                    want = (
                        None
                        if before.type == "DELETE"
                        else (
                            before.value,
                            before.mod_revision,
                            before.create_revision,
                            before.version,
                        )
                    )
                    if e.prev != want:
                        v.append(
                            f"prev_kv: {e.type} {e.key}@{e.mod_revision} has prev_kv "
                            f"{e.prev}, the previous event gives {want}"
                        )
                    if e.type == "PUT":
                        want_v = 1 if before.type == "DELETE" else before.version + 1
                        want_c = (
                            e.mod_revision if before.type == "DELETE" else before.create_revision
                        )
                        if (e.version, e.create_revision) != (want_v, want_c):
                            v.append(
                                f"prev_kv: PUT {e.key}@{e.mod_revision} has version "
                                f"{e.version} create {e.create_revision}, expected "
                                f"{want_v} {want_c}"
                            )
                prev_by_key[e.key] = e
            if resp.events and resp.revision < resp.events[-1].mod_revision:
                v.append(f"ordered: response revision {resp.revision} below its last event")
    res.responses = n_resp
    lo = segments[0].start if segments else 1
    hi = covered_hi
    ref_count: dict[int, int] = {}
    for e in reference:
        ref_count[e.mod_revision] = ref_count.get(e.mod_revision, 0) + 1
    missing = 0
    for e in reference:
        r = e.mod_revision
        if not (lo <= r <= hi and ref_range[0] <= r <= ref_range[1]) or is_excused(r):
            continue
        got = seen.get((r, e.key))
        if got is None:
            missing += 1
            if missing <= 10:
                v.append(f"reliable: {e.type} {e.key}@{r} missing (no gap was excused)")
        elif got != e and not (
            r == ref_range[0] and e.prev is None and replace(got, prev=None) == e
        ):
            # at the reference's first revision (a compaction point) etcd cannot read prev_kv
            v.append(f"reliable: {e.key}@{r} delivered as {got}, reference has {e}")
    for r, n in count_of_rev.items():
        if ref_range[0] <= r <= ref_range[1] and ref_count.get(r, 0) != n:
            v.append(
                f"atomic: revision {r} delivered {n} events, reference has {ref_count.get(r, 0)}"
            )
    for key, value, r in acked:
        if lo <= r <= hi and not is_excused(r):
            got = seen.get((r, key))
            if got is None or got.type != "PUT" or got.value != value:
                missing += 1
                if missing <= 20:
                    v.append(
                        f"reliable: acknowledged put {key}={value}@{r} not delivered (got {got})"
                    )
    if missing > 20:
        v.append(f"reliable: {missing} events missing in total")
    return res
