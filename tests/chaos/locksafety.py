"""Lock safety: no two holders at once, and no stale fencing token accepted.

Theory of operation
-------------------
Input: the grants recorded by the lock workers (:mod:`.lockworker`: ``pid``, ``token``,
``start``, ``end``, all conservative) and the fenced register's write attempts in decision
order (:mod:`.fenced`). Violations:

* *two holders*: two grants with different tokens whose ``[start, end]`` intervals overlap;
* *duplicate token*: two grants by different processes with the same token;
* *stale grant*: a grant that started after another one ended but carries a lower token
  (fencing tokens must increase with every grant);
* *stale token accepted*: the register accepted a token lower than one it accepted before
  (the resource's own rule, checked independently from its log).

Rejected writes are counted, not flagged: a holder whose lease expired between its check and
its write is exactly what fencing is for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["LockResult", "check_locks"]


@dataclass
class LockResult:
    grants: int = 0
    writes_accepted: int = 0
    writes_rejected: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        head = (
            f"lock safety: {self.grants} grants, {self.writes_accepted} fenced writes "
            f"accepted, {self.writes_rejected} rejected, {len(self.violations)} violations"
        )
        return "\n".join([head, *(f"  {v}" for v in self.violations[:20])])


def check_locks(grants: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> LockResult:
    res = LockResult(grants=len(grants))
    gs = sorted(grants, key=lambda g: g["start"])
    for i, a in enumerate(gs):
        for b in gs[i + 1 :]:
            if b["start"] > a["end"]:
                if b["token"] < a["token"]:
                    res.violations.append(
                        f"stale grant: token {b['token']} (pid {b['pid']}, from "
                        f"{b['start']:.3f}) after token {a['token']} (pid {a['pid']}) ended at "
                        f"{a['end']:.3f}"
                    )
                continue
            if a["token"] == b["token"]:
                if a["pid"] != b["pid"]:
                    res.violations.append(
                        f"duplicate token {a['token']}: pids {a['pid']} and {b['pid']}"
                    )
                continue
            res.violations.append(
                f"two holders: token {a['token']} (pid {a['pid']}) held "
                f"[{a['start']:.3f}, {a['end']:.3f}] and token {b['token']} (pid {b['pid']}) "
                f"[{b['start']:.3f}, {b['end']:.3f}] overlap by {a['end'] - b['start']:.3f}s"
            )
    highest = 0
    for w in attempts:
        if w["accepted"]:
            res.writes_accepted += 1
            if w["token"] < highest:
                res.violations.append(
                    f"stale token accepted: {w['token']} after {highest} "
                    f"(pid {w['pid']} at {w['t']:.3f})"
                )
            highest = max(highest, w["token"])
        else:
            res.writes_rejected += 1
    return res
