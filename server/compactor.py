"""Auto-compaction: etcd's ``--auto-compaction-mode`` / ``--auto-compaction-retention``.

Theory of operation
-------------------
A :class:`Compactor` runs as a background task of the server on every member (as etcd's
v3compactor does), but proposes compactions only while this member leads: each time it would
compact it asks the node for ``leader_term()`` (non-zero only while leading now and after
applying an entry of that term, so the store it reads is complete) and proposes with
``propose_as_leader(.., term)``, which is never forwarded to another member. On a follower the
compactor stays paused (etcd pauses it when the member loses leadership). The proposal is the
one the KV Compact RPC makes (``Kind.COMPACT`` + a CompactionRequest), so every member applies
the compaction at the same log position through Raft and all report the same compact
revision.

Modes (server/etcdserver/api/v3compactor in etcd):

* **periodic** -- retention is a duration (Go syntax, ``30m``, ``1h``; a bare integer means
  hours). With ``P = min(retention, 1h)`` the compactor samples the store revision every
  ``P / 10`` and keeps the samples of the last ``retention`` (``retention / (P / 10) + 1`` of
  them), so the oldest sample is the revision the store had ``retention`` ago. It first
  compacts once ``retention`` has passed since it started, then every ``P``, each time to
  the oldest sample (skipped when that is the revision it compacted last). Samples are taken
  also while not leading, so a new leader can compact without waiting a full window.
* **revision** -- retention is a number of revisions. Every ``revision_interval`` (etcd: 5
  minutes; coord's ``--experimental-auto-compaction-revision-interval`` can shorten it) the
  leader compacts to ``current revision - retention`` when that is positive and new.

Retention ``0`` (the default) disables auto-compaction. A compaction to a revision already
compacted (another leader, or a client, got there first) counts as done, as in etcd; other
failures (no leader, a timeout) are logged as warnings and retried at the next interval.
Time is the event loop's (``anyio.sleep``) and ``time.monotonic``.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from coord._pb import etcdserverpb as pb
from coord.errors import CompactedError, CoordError

from .command import Kind, encode
from .statemachine import StateMachine

if TYPE_CHECKING:
    from .node.protocol import Node

__all__ = ["MODES", "Compactor", "CompactionPolicy", "parse_retention"]

log = logging.getLogger("coord.server.compactor")

MODES = ("periodic", "revision")
#: Longest periodic compaction interval (etcd: compact at most every hour).
MAX_PERIOD = 3600.0
#: Samples per periodic interval (etcd's retryDivisor).
SAMPLES_PER_PERIOD = 10
#: etcd's revInterval for revision mode.
DEFAULT_REVISION_INTERVAL = 300.0

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+")
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


@dataclass(frozen=True)
class CompactionPolicy:
    """A parsed mode and retention: seconds (periodic) or revisions (revision)."""

    mode: str
    retention: float

    @property
    def enabled(self) -> bool:
        """False for retention 0 (auto-compaction off)."""
        return self.retention > 0

    def describe(self) -> str:
        """The retention as logged: ``N revisions``, or a duration as Go prints it
        (``200ms``, ``2s``, ``1m30s``, ``1h0m0s``)."""
        if self.mode == "revision":
            return f"{int(self.retention)} revisions"
        seconds = self.retention
        if seconds < 1:
            return f"{seconds * 1000:g}ms"
        h, rest = divmod(seconds, 3600)
        m, sec = divmod(rest, 60)
        text = f"{sec:g}s"
        return f"{int(h)}h{int(m)}m{text}" if h else f"{int(m)}m{text}" if m else text


def parse_retention(mode: str, retention: str) -> CompactionPolicy:
    """etcd's parseCompactionRetention, stricter: ValueError naming the flag and value.

    periodic: a non-negative integer (hours) or a Go duration with units (``30m``, ``1h30m``);
    revision: a non-negative integer (etcd also takes a duration there and reads its
    nanoseconds as a revision count; coord refuses it).
    """
    if mode not in MODES:
        raise ValueError(f"unknown --auto-compaction-mode {mode!r} (expected periodic or revision)")
    text = retention.strip() or "0"  # etcd: an empty retention is "0"
    if text.isdigit():
        n = int(text)
        return CompactionPolicy(mode, float(n * 3600 if mode == "periodic" else n))
    if mode == "periodic" and _GO_DURATION.fullmatch(text):
        seconds = sum(float(m.group(1)) * _UNITS[m.group(2)] for m in _PART.finditer(text))
        return CompactionPolicy(mode, seconds)
    expected = (
        "a duration (30m, 1h) or a number of hours"
        if mode == "periodic"
        else "a non-negative number of revisions"
    )
    raise ValueError(
        f"invalid --auto-compaction-retention {retention!r} for "
        f"--auto-compaction-mode {mode}: expected {expected}"
    )


class Compactor:
    """Leader-only auto-compaction of ``sm``'s store through ``node`` (module docstring)."""

    def __init__(
        self,
        policy: CompactionPolicy,
        node: Node,
        sm: StateMachine,
        revision_interval: float = DEFAULT_REVISION_INTERVAL,
    ) -> None:
        self.policy = policy
        self.node = node
        self.sm = sm
        self.revision_interval = revision_interval

    def _rev(self) -> int:
        return self.sm.kv.rev  # the current store (a snapshot restore replaces it)

    async def run(self) -> None:
        """Forever (no-op when disabled): the mode's loop."""
        if not self.policy.enabled:
            return
        log.info("auto-compaction: mode %s, retention %s", self.policy.mode, self.policy.describe())
        if self.policy.mode == "periodic":
            await self._run_periodic()
        else:
            await self._run_revision()

    async def _run_periodic(self) -> None:
        period = self.policy.retention
        interval = min(period, MAX_PERIOD)
        sample = interval / SAMPLES_PER_PERIOD
        samples: deque[int] = deque(maxlen=int(period / sample) + 1)
        last_rev = 0
        last_success = time.monotonic()
        wait = period  # the first compaction waits a whole retention, later ones `interval`
        while True:
            samples.append(self._rev())  # samples[0]: the revision `period` ago
            await anyio.sleep(sample)
            term = self.node.leader_term()
            rev = samples[0]
            if not term or time.monotonic() - last_success < wait or rev == last_rev:
                continue
            wait = interval
            if await self._compact(rev, term):
                last_rev = rev
                last_success = time.monotonic()

    async def _run_revision(self) -> None:
        retention = int(self.policy.retention)
        prev = 0
        while True:
            await anyio.sleep(self.revision_interval)
            term = self.node.leader_term()
            rev = self._rev() - retention
            if not term or rev <= 0 or rev == prev:
                continue
            if await self._compact(rev, term):
                prev = rev

    async def _compact(self, rev: int, term: int) -> bool:
        """Propose a compaction to ``rev`` as leader of ``term``; True when done (or when the
        store was already compacted at or past ``rev``)."""
        log.info(
            "Starting auto-compaction at revision %d (retention: %s)", rev, self.policy.describe()
        )
        command = encode(Kind.COMPACT, bytes(pb.CompactionRequest(revision=rev)))
        started = time.monotonic()
        try:
            await self.node.propose_as_leader(command, term)
        except CompactedError:
            log.info("Finished auto-compaction: revision %d was already compacted", rev)
            return True
        except CoordError as e:
            log.warning("auto-compaction at revision %d failed (will retry): %s", rev, e.message)
            return False
        log.info(
            "Finished auto-compaction at revision %d (took %.3fs)", rev, time.monotonic() - started
        )
        return True
