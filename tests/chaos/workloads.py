"""Client workloads that run during a chaos run and record what they saw.

Theory of operation
-------------------
Every workload runs until its ``stop`` event is set and records with ``time.monotonic()``:

* :class:`RegisterWorkload` -- a few threads, each with its own :class:`coord.Client` (all
  endpoints, starting at a different one), doing ``get`` / ``put`` / ``cas`` (a txn comparing
  the value) on a handful of keys, with unique values, into a :class:`~.history.History`
  (checked by :mod:`.linearizable`; acknowledged puts also feed the watch checker).
* :class:`WatchRecorder` -- a thread watching the run's whole prefix with ``prev_kv`` from
  revision 1, recording every response with its receive time. With ``resume_every`` it also
  closes its watch now and then and reopens it at ``last revision + 1`` (the explicit resume
  etcd promises to be gap- and duplicate-free); a compacted resume point is recorded as an
  excused gap and the watch restarts at the compaction revision. Checked by
  :mod:`.watchguarantees`.
* :class:`LeaseProbes` -- a few asyncio tasks, each granting a lease, attaching a key, keeping
  it alive on a raw ``LeaseKeepAlive`` stream for a while (recording every keep-alive's send
  time, answer time and TTL), then letting it expire. Checked by :mod:`.leasesafety` against
  the deletions the watchers observed.
* :func:`start_lock_workers` -- separate OS processes (:mod:`.lockworker`) taking a
  ``coord.recipes.Lock`` and writing to a :class:`~.fenced.FencedRegister`. Checked by
  :mod:`.locksafety`.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import Proc

from coord import AsyncClient, Client, CompactedError, CreateRevision, Put, Value
from coord._pb import etcdserverpb as pb

from .history import OK, History

__all__ = [
    "KeepAlive",
    "LeaseProbes",
    "RegisterWorkload",
    "WatchRecorder",
    "WatchedResponse",
    "start_lock_workers",
]


class RegisterWorkload:
    def __init__(
        self,
        endpoints: list[str],
        prefix: str,
        history: History,
        seed: int,
        workers: int = 3,
        keys: int = 6,
        timeout: float = 5.0,
    ) -> None:
        self.endpoints = endpoints
        self.prefix = prefix
        self.history = history
        self.seed = seed
        self.keys = [f"{prefix}reg/{i}" for i in range(keys)]
        self.timeout = timeout
        self.stop = threading.Event()
        #: set by a nemesis that wants the cluster idle for a while
        self.paused = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(w,), daemon=True, name=f"register-{w}")
            for w in range(workers)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.timeout + 30)

    def _run(self, w: int) -> None:
        rng = random.Random(self.seed * 1000 + w)
        eps = self.endpoints[w % len(self.endpoints) :] + self.endpoints[: w % len(self.endpoints)]
        last: dict[str, str | None] = {}
        n = 0
        with Client(eps, timeout=self.timeout) as client:
            while not self.stop.is_set():
                if self.paused.is_set():
                    time.sleep(0.05)
                    continue
                key = rng.choice(self.keys)
                r = rng.random()
                n += 1
                value = f"w{w}-{n}"
                if r < 0.4:
                    op = self.history.invoke(w, "get", key)
                    try:
                        kv = client.get(key)
                    except Exception as e:
                        op.fail_with(e)
                    else:
                        got = kv.value.decode() if kv is not None else None
                        last[key] = got
                        op.finish(OK, got)
                elif r < 0.8:
                    op = self.history.invoke(w, "put", key, value)
                    try:
                        rev = client.put(key, value)
                    except Exception as e:
                        op.fail_with(e)
                    else:
                        op.revision = rev
                        op.finish(OK, rev)
                else:
                    expected = last.get(key)
                    op = self.history.invoke(w, "cas", key, (expected, value))
                    cmp = (
                        (CreateRevision(key) == 0) if expected is None else (Value(key) == expected)
                    )
                    try:
                        res = client.txn(compare=[cmp], success=[Put(key, value)])
                    except Exception as e:
                        op.fail_with(e)
                    else:
                        if res.succeeded:
                            op.revision = res.revision
                        op.finish(OK, bool(res.succeeded))
                time.sleep(rng.uniform(0.005, 0.03))


@dataclass(frozen=True)
class WatchedEvent:
    type: str  # PUT or DELETE
    key: str
    value: str
    mod_revision: int
    create_revision: int
    version: int
    prev: tuple[str, int, int, int] | None  # prev_kv: (value, mod, create, version)


@dataclass
class WatchedResponse:
    t: float
    revision: int
    events: tuple[WatchedEvent, ...]


@dataclass
class WatchSegment:
    """One server-side watch: created at ``start`` (a revision), then its responses."""

    start: int
    responses: list[WatchedResponse] = field(default_factory=list)
    #: why it ended: "resume" (explicit), "compacted:<rev>", "error:<text>", "stop"
    ended: str = ""


def _convert(ev: Any) -> WatchedEvent:
    kv, prev = ev.kv, ev.prev_kv
    return WatchedEvent(
        "PUT" if int(ev.type) == 0 else "DELETE",
        kv.key.decode(),
        kv.value.decode(),
        kv.mod_revision,
        kv.create_revision,
        kv.version,
        None
        if prev is None
        else (prev.value.decode(), prev.mod_revision, prev.create_revision, prev.version),
    )


class WatchRecorder:
    def __init__(
        self,
        endpoints: list[str],
        prefix: str,
        seed: int,
        resume_every: float | None = None,
        name: str = "watch",
    ) -> None:
        self.endpoints = endpoints
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.resume_every = resume_every
        self.name = name
        self.segments: list[WatchSegment] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=name)

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        self.thread.join(30)

    @property
    def last_revision(self) -> int:
        for seg in reversed(self.segments):
            if seg.responses:
                return seg.responses[-1].revision
        return self.segments[0].start - 1 if self.segments else 0

    def _run(self) -> None:
        next_rev = 1
        with Client(self.endpoints, timeout=10) as client:
            while not self.stop.is_set():
                seg = WatchSegment(next_rev)
                self.segments.append(seg)
                try:
                    w = client.watch_prefix(self.prefix, start_revision=next_rev, prev_kv=True)
                except CompactedError as e:
                    seg.ended = f"compacted:{e.compact_revision}"
                    next_rev = max(next_rev, e.compact_revision)
                    continue
                except Exception as e:
                    seg.ended = f"error:{e!r}"
                    self.errors.append(seg.ended)
                    time.sleep(0.5)
                    continue
                until = (
                    time.monotonic() + self.rng.uniform(0.5, 2) * self.resume_every
                    if self.resume_every
                    else float("inf")
                )
                try:
                    while not self.stop.is_set() and time.monotonic() < until:
                        resp = w.next_response(timeout=0.3)
                        if resp is None or resp.progress:
                            continue
                        seg.responses.append(
                            WatchedResponse(
                                time.monotonic(),
                                resp.revision,
                                tuple(_convert(e) for e in resp.events),
                            )
                        )
                        next_rev = resp.revision + 1
                    seg.ended = "stop" if self.stop.is_set() else "resume"
                except CompactedError as e:
                    seg.ended = f"compacted:{e.compact_revision}"
                    next_rev = max(next_rev, e.compact_revision)
                except StopIteration:
                    seg.ended = "closed"
                except Exception as e:
                    seg.ended = f"error:{e!r}"
                    self.errors.append(seg.ended)
                    time.sleep(0.2)
                finally:
                    w.close()


@dataclass(frozen=True)
class KeepAlive:
    lease: int
    sent: float
    received: float
    ttl: int  # -1: no answer (stream broke or timed out)


@dataclass
class LeaseRecord:
    lease: int
    key: str
    granted_ttl: int
    grant_sent: float
    put_ok: bool = False
    abandoned: float = float("inf")  # when the probe stopped keeping it alive


class LeaseProbes:
    def __init__(
        self, endpoints: list[str], prefix: str, seed: int, probes: int = 3, ttl: int = 3
    ) -> None:
        self.endpoints = endpoints
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.probes = probes
        self.ttl = ttl
        self.leases: list[LeaseRecord] = []
        self.keepalives: list[KeepAlive] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), daemon=True, name="lease-probes"
        )

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        self.thread.join(30)

    async def _main(self) -> None:
        async with AsyncClient(self.endpoints, timeout=5) as client:
            await asyncio.gather(*(self._probe(client, i) for i in range(self.probes)))

    async def _probe(self, client: AsyncClient, slot: int) -> None:
        conn = client._conn
        n = 0
        while not self.stop.is_set():
            n += 1
            sent = time.monotonic()
            try:
                resp = await conn.unary(
                    "/etcdserverpb.Lease/LeaseGrant",
                    pb.LeaseGrantRequest(ttl=self.ttl),
                    pb.LeaseGrantResponse.parse,
                    idempotent=False,
                )
            except Exception:
                await asyncio.sleep(0.3)
                continue
            rec = LeaseRecord(int(resp.id), f"{self.prefix}lease/{slot}-{n}", int(resp.ttl), sent)
            self.leases.append(rec)
            try:
                await client.put(rec.key, "x", lease=rec.lease)
                rec.put_ok = True
            except Exception:
                pass
            hold = self.rng.uniform(1.0, 4.0) * self.ttl
            await self._keep_alive(conn, rec, time.monotonic() + hold)
            rec.abandoned = time.monotonic()

    async def _keep_alive(self, conn: Any, rec: LeaseRecord, until: float) -> None:
        interval = self.ttl / 3
        while not self.stop.is_set() and time.monotonic() < until:
            try:
                async with conn.open_stream(
                    "/etcdserverpb.Lease/LeaseKeepAlive",
                    pb.LeaseKeepAliveResponse.parse,
                    {"hasleader": "true"},
                ) as (_, stream):
                    while not self.stop.is_set() and time.monotonic() < until:
                        sent = time.monotonic()
                        await stream.send_message(pb.LeaseKeepAliveRequest(id=rec.lease))
                        try:
                            r = await asyncio.wait_for(stream.recv_message(), self.ttl)
                        except TimeoutError:
                            self.keepalives.append(KeepAlive(rec.lease, sent, time.monotonic(), -1))
                            raise
                        if r is None:
                            raise EOFError("keep-alive stream ended")
                        self.keepalives.append(
                            KeepAlive(rec.lease, sent, time.monotonic(), int(r.ttl))
                        )
                        if r.ttl <= 0:
                            return  # the lease is gone (says the server)
                        await asyncio.sleep(interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.1)


LOCKWORKER = Path(__file__).with_name("lockworker.py")


def start_lock_workers(
    endpoints: list[str],
    name: str,
    register: Path,
    holds: Path,
    n: int,
    ttl: int,
    seconds: float,
    seed: int,
    tmp: Path,
) -> list[Proc]:
    """Start ``n`` lock worker processes (see :mod:`.lockworker`)."""
    procs = []
    for i in range(n):
        # seed % len(endpoints) == i % len(endpoints): worker i starts on member i
        argv = [
            sys.executable,
            str(LOCKWORKER),
            ",".join(endpoints),
            name,
            str(register),
            str(holds),
            str(ttl),
            str(seconds),
            str(seed * 300 + i),
        ]
        procs.append(Proc(argv, tmp / f"lockworker{i}.log", cwd=tmp))
    return procs


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
