"""Long randomized chaos runs on demand: ``tox -e chaos`` (or set COORD_CHAOS_SECONDS).

The run is a sequence of rounds of at most ``COORD_CHAOS_ROUND`` seconds (default 120), each a
fresh 3-member cluster with every nemesis and every workload, seeded ``base + i`` where the
base is ``COORD_CHAOS_SEED`` (default: random, printed). Rounds keep each history small enough
for the checkers and make every failure replayable on its own:
``COORD_CHAOS_SEED=<round seed> COORD_CHAOS_SECONDS=<round length> tox -e chaos``.
The summary at the end (ops, faults by kind, violations) is what docs/chaos.md quotes.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from .run import ChaosConfig, Report, run_chaos

SECONDS = float(os.environ.get("COORD_CHAOS_SECONDS", "0") or 0)
ROUND = float(os.environ.get("COORD_CHAOS_ROUND", "120"))
ALL = ("kill", "pause", "partition", "diskstall", "slowdisk", "membership", "transfer", "compact")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SECONDS, reason="set COORD_CHAOS_SECONDS (tox -e chaos)"),
    pytest.mark.timeout(int(SECONDS * 2 + 600)),
]


def test_long_randomized(tmp_path: Path) -> None:
    base = int(os.environ.get("COORD_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    nemeses = tuple(os.environ.get("COORD_CHAOS_NEMESES", ",".join(ALL)).split(","))
    print(
        f"long chaos run: {SECONDS:.0f}s in rounds of {ROUND:.0f}s, base seed {base}, "
        f"nemeses {','.join(nemeses)}"
    )
    reports: list[Report] = []
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < SECONDS - 20:
        left = SECONDS - (time.monotonic() - start)
        cfg = ChaosConfig(
            base + i,
            seconds=min(ROUND, max(left - 15, 20)),
            nemeses=nemeses,
            locks=True,
            snapshot_count=200,
        )
        reports.append(run_chaos(tmp_path / f"round{i}", cfg))
        i += 1
    print(total_summary(reports, time.monotonic() - start))
    bad = [r for r in reports if not r.ok]
    assert not bad, "\n\n".join(r.summary() for r in bad)


def total_summary(reports: list[Report], elapsed: float) -> str:
    ops: dict[str, int] = {}
    faults: dict[str, int] = {}
    for r in reports:
        for k, v in r.ops.items():
            ops[k] = ops.get(k, 0) + v
        for k, v in r.faults.items():
            faults[k] = faults.get(k, 0) + v
    client_ops = sum(v for k, v in ops.items() if ":" in k and not k.startswith("watch"))
    bad = [r for r in reports if not r.ok]
    lines = [
        f"== chaos summary: {len(reports)} rounds, {elapsed / 60:.1f} min ==",
        f"register ops {client_ops} ("
        + ", ".join(
            f"{k}={v}" for k, v in sorted(ops.items()) if ":" in k and not k.startswith("watch")
        )
        + ")",
        f"keep-alives {ops.get('keepalive', 0)}, lock grants {ops.get('lock-grant', 0)}, "
        f"watch events {sum(v for k, v in ops.items() if k.startswith('watch'))}",
        "faults injected: " + ", ".join(f"{k}={v}" for k, v in sorted(faults.items())),
        f"rounds with violations or liveness findings: {len(bad)}"
        + (" (seeds " + ", ".join(str(r.config.seed) for r in bad) + ")" if bad else ""),
    ]
    for r in bad:
        lines += [f"  seed {r.config.seed}: {v.splitlines()[0]}" for v in r.violations]
        lines += [f"  seed {r.config.seed}: liveness: {f}" for f in r.findings]
    return "\n".join(lines)
