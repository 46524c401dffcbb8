"""What an operator sees of the cluster: the dashboard's data and etcd v2's ``/v2/stats``.

Theory of operation: :meth:`Overview.local` describes this member as plain JSON data: its
identity and role, Raft term and indexes, database size, the counters and histograms behind
``/metrics``, and, on the leader, its view of each follower (round-trip times from the peer
transport's probes, replication lag from Raft's progress, the time since it last heard from
the follower). Every member answers that description to any other over the peer connections
(:data:`STATUS_CALL`, a ``member_call`` that needs no leader), so :meth:`Overview.cluster`,
the dashboard's one JSON endpoint, asks every member at once and shows an unreachable one as
down with the reason; the followers' latencies come from the leader's own description.

:meth:`Overview.v2_self` and :meth:`Overview.v2_leader` answer in etcd v2's
``/v2/stats/self`` and ``/v2/stats/leader`` shapes (latencies in milliseconds; v2's
"success"/"fail" counts are the probes answered and missed).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from coord._pb import etcdserverpb as pb
from coord.server.api.callstats import CallStats
from coord.server.api.maintenance import VERSION
from coord.server.config import Config
from coord.server.node.protocol import Node
from coord.server.statemachine import StateMachine
from coord.server.watch import WatchHub

__all__ = ["STATUS_CALL", "Overview"]

log = logging.getLogger(__name__)

#: The member_call method every member answers with :meth:`Overview.local`.
STATUS_CALL = "coord.status"
#: Seconds the dashboard waits for a member's description before showing it as down.
MEMBER_TIMEOUT = 1.0


def _hex(member_id: int) -> str:
    return f"{member_id:x}"


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration.String() prints it (``1h2m3.5s``, ``350ms``)."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{int(hours)}h" if hours else ""
    out += f"{int(minutes)}m" if hours or minutes else ""
    return out + f"{secs:.9g}s"


class Overview:
    """This member's description and the cluster's, for the dashboard and /v2/stats."""

    def __init__(
        self,
        config: Config,
        node: Node,
        sm: StateMachine,
        hub: WatchHub,
        calls: CallStats,
        db_size: Callable[[], int],
    ) -> None:
        """``db_size``: this member's database size as Status reports it."""
        self.config = config
        self.db_size = db_size
        self.node = node
        self.sm = sm
        self.hub = hub
        self.calls = calls
        self.started = time.time()
        self._leader_since: tuple[int, float] = (0, self.started)
        node.register_call(STATUS_CALL, self._status_call, leader_only=False)

    def _leader_uptime(self, now: float) -> tuple[int, float]:
        """The leader and since when this member has known it (as first seen here)."""
        lead = self.node.leader_id()
        if lead != self._leader_since[0]:
            self._leader_since = (lead, now)
        return self._leader_since

    def _status_call(self, _body: bytes) -> bytes:
        return json.dumps(self.local()).encode()

    def _role(self) -> str:
        node = self.node
        if node.is_leader():
            return "leader"
        if any(m.is_learner for m in node.members() if m.id == node.member_id):
            return "learner"
        return "follower" if node.leader_id() else "candidate"

    def local(self) -> dict[str, Any]:
        """This member's description (see the module docstring)."""
        node, kv = self.node, self.sm.kv
        me = next((m for m in node.members() if m.id == node.member_id), None)
        ops, stats = kv.counts, node.stats
        peers = node.peer_stats()
        followers = []
        for f in node.followers():
            p = peers.get(f.id)
            followers.append(
                {
                    "id": _hex(f.id),
                    "rtt": p.latency.to_json() if p is not None and p.latency.count else None,
                    "success": p.probes_ok if p is not None else 0,
                    "fail": p.probes_failed if p is not None else 0,
                    "lag_entries": f.lag_entries,
                    "lag_seconds": f.lag_seconds,
                    "since_heard": f.since_heard,
                    "is_learner": f.is_learner,
                }
            )
        watchers, _slow = self.hub.counts()
        self._leader_uptime(time.time())
        return {
            "id": _hex(node.member_id),
            "name": me.name if me is not None else self.config.name,
            "client_urls": list(me.client_urls) if me is not None else [],
            "peer_urls": list(me.peer_urls) if me is not None else [],
            "role": self._role(),
            "leader": _hex(node.leader_id()) if node.leader_id() else None,
            "term": node.term(),
            "commit": node.commit_index(),
            "applied": node.applied_index(),
            "db_size": self.db_size(),
            "db_size_in_use": kv.db_size(),
            "version": VERSION,
            "followers": followers,
            "counters": {
                "proposals_committed": node.commit_index(),
                "proposals_applied": node.applied_index(),
                "proposals_failed": stats.proposals_failed,
                "proposals_pending": node.pending_proposals(),
                "puts": ops.puts,
                "ranges": ops.ranges,
                "txns": ops.txns,
                "deletes": ops.deletes,
                "leader_changes": stats.leader_changes,
            },
            "histograms": {
                "request": self.calls.unary_latency.to_json(),
                "fsync": node.disk_stats().fsync.to_json(),
            },
            "state": {
                "keys": kv.key_count(),
                "revision": kv.rev,
                "compact_revision": kv.compact_rev,
                "watchers": watchers,
                "leases": len(self.sm.lessor),
                "leader_changes": stats.leader_changes,
            },
        }

    async def _describe(self, member_id: int) -> dict[str, Any]:
        if member_id == self.node.member_id:
            return self.local()
        body = await self.node.member_call(member_id, STATUS_CALL, b"", timeout=MEMBER_TIMEOUT)
        answer: dict[str, Any] = json.loads(body)
        return answer

    async def cluster(self) -> dict[str, Any]:
        """The dashboard's data: every member's description (asked at once; a member that
        does not answer within MEMBER_TIMEOUT is down), alarms, and the leader's view of the
        followers."""
        members = self.node.members()
        found: dict[int, dict[str, Any]] = {}
        errors: dict[int, str] = {}

        async def ask(member_id: int) -> None:
            try:
                with anyio.fail_after(MEMBER_TIMEOUT * 2):
                    found[member_id] = await self._describe(member_id)
            except (OSError, TimeoutError, ValueError) as e:
                errors[member_id] = str(e) or type(e).__name__

        async with anyio.create_task_group() as tg:
            for m in members:
                tg.start_soon(ask, m.id)
        local = found.get(self.node.member_id) or self.local()
        rows = []
        for m in members:
            d = found.get(m.id, {})
            rows.append(
                {
                    "id": _hex(m.id),
                    "name": m.name or d.get("name", ""),
                    "client_urls": list(m.client_urls),
                    "peer_urls": list(m.peer_urls),
                    "role": d.get("role", "unknown") if m.id in found else "unknown",
                    "up": m.id in found,
                    "error": errors.get(m.id),
                    "term": d.get("term"),
                    "commit": d.get("commit"),
                    "applied": d.get("applied"),
                    "db_size": d.get("db_size"),
                    "db_size_in_use": d.get("db_size_in_use"),
                    "version": d.get("version"),
                }
            )
        leader = next((d for d in found.values() if d.get("role") == "leader"), None)
        names = {_hex(m.id): m.name for m in members}
        followers = [
            {**f, "name": names.get(f["id"], "")} for f in (leader or {}).get("followers", [])
        ]
        alarms = [
            {"member": _hex(member), "alarm": pb.AlarmType(kind).name}
            for member, kind in sorted(self.sm.alarms)
        ]
        return {
            "now": time.time(),
            "self": local["id"],
            "leader": local["leader"],
            "cluster_id": _hex(self.node.cluster_id),
            "members": rows,
            "alarms": alarms,
            "followers": followers,
            "counters": local["counters"],
            "histograms": local["histograms"],
            "state": local["state"],
        }

    def v2_self(self) -> dict[str, Any]:
        """etcd v2's ``/v2/stats/self``."""
        node = self.node
        now = time.time()
        lead, since = self._leader_uptime(now)
        me = next((m for m in node.members() if m.id == node.member_id), None)
        peers = node.peer_stats().values()
        state = {"leader": "StateLeader", "learner": "StateFollower", "follower": "StateFollower"}
        return {
            "name": me.name if me is not None else self.config.name,
            "id": _hex(node.member_id),
            "state": state.get(self._role(), "StateCandidate"),
            "startTime": _rfc3339(self.started),
            "leaderInfo": {
                "leader": _hex(lead) if lead else "",
                "uptime": _go_duration(now - since),
                "startTime": _rfc3339(since),
            },
            "recvAppendRequestCnt": sum(p.appends_received for p in peers),
            "sendAppendRequestCnt": sum(p.appends_sent for p in peers),
        }

    def v2_leader(self) -> dict[str, Any] | None:
        """etcd v2's ``/v2/stats/leader``; None unless this member leads."""
        if not self.node.is_leader():
            return None
        peers = self.node.peer_stats()
        followers = {}
        for f in self.node.followers():
            p = peers.get(f.id)
            lat = p.latency if p is not None else None
            followers[_hex(f.id)] = {
                "latency": {
                    "current": lat.current * 1000 if lat else 0.0,
                    "average": lat.mean * 1000 if lat else 0.0,
                    "standardDeviation": lat.stddev * 1000 if lat else 0.0,
                    "minimum": lat.minimum * 1000 if lat and lat.count else 0.0,
                    "maximum": lat.maximum * 1000 if lat else 0.0,
                },
                "counts": {
                    "fail": p.probes_failed if p is not None else 0,
                    "success": p.probes_ok if p is not None else 0,
                },
            }
        return {"leader": _hex(self.node.member_id), "followers": followers}
