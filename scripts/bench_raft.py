#!/usr/bin/env python3
"""Throughput of the pure Raft core: entries committed per second in a 3-node group.

No I/O at all: MemoryStorage, messages handed over in memory, no invariant checks.  Each round
the leader receives ``batch`` proposals, then every node drains its Ready (persist to
MemoryStorage, send, apply, advance) and messages are delivered until the group is idle.  The
round's proposals are made either as ``batch`` calls to ``propose`` (each one triggers its own
append broadcast, as in etcd) or as one ``propose_batch`` call (one append per follower).  The
number reported is committed-and-applied entries on the leader per wall-clock second, so it is
an upper bound on what the core can sustain before the WAL, the transport and the state
machine add their costs.

    python scripts/bench_raft.py                   # batch sizes 1 10 100 1000, best of 3
    python scripts/bench_raft.py --batches 1 64 --seconds 3 --payload 256
"""

from __future__ import annotations

import argparse
import platform
import random
import time

from coord.server.raft import ConfState, MemoryStorage, Message, RaftConfig, RawNode, StateType


def run(
    batch: int, seconds: float, payload: int, max_size_per_msg: int, together: bool
) -> tuple[int, float]:
    ids = [1, 2, 3]
    stores = {i: MemoryStorage(ConfState(voters=ids)) for i in ids}
    nodes = {
        i: RawNode(
            RaftConfig(id=i, rng=random.Random(i).randrange, max_size_per_msg=max_size_per_msg),
            stores[i],
        )
        for i in ids
    }
    net: list[Message] = []
    applied = dict.fromkeys(ids, 0)

    def drain(i: int) -> None:
        n = nodes[i]
        while n.has_ready():
            rd = n.ready()
            net.extend(rd.messages)
            st = stores[i]
            if rd.snapshot is not None:
                st.apply_snapshot(rd.snapshot)
            if rd.entries:
                st.append(rd.entries)
            if rd.hard_state is not None:
                st.set_hard_state(rd.hard_state)
            net.extend(rd.msgs_after_append)
            applied[i] += len(rd.committed_entries)
            n.advance(rd)

    def settle() -> None:
        while True:
            for i in ids:
                drain(i)
            if not net:
                return
            msgs = net[:]
            net.clear()
            for m in msgs:
                nodes[m.to].step(m)

    nodes[1].campaign()
    settle()
    assert nodes[1].state == StateType.LEADER
    data = b"x" * payload
    leader = nodes[1]
    start_applied = applied[1]
    t0 = time.perf_counter()
    rounds = 0
    while True:
        if together:
            leader.propose_batch([data] * batch)
        else:
            for _ in range(batch):
                leader.propose(data)
        settle()
        rounds += 1
        # Compact now and then so MemoryStorage does not grow without bound.
        if rounds % 64 == 0:
            for i in ids:
                st = stores[i]
                idx = st.last_index() - 1
                if idx > st.first_index():
                    st.create_snapshot(idx, ConfState(voters=ids), b"")
                    st.compact(idx)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return applied[1] - start_applied, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--payload", type=int, default=128, help="bytes per entry")
    ap.add_argument("--max-size-per-msg", type=int, default=1 << 20)
    ap.add_argument("--repeat", type=int, default=3, help="report the best of N runs")
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"3 voters, payload {args.payload} B, max_size_per_msg {args.max_size_per_msg}")
    print(f"{'mode':>14} {'batch':>7} {'entries':>10} {'seconds':>8} {'entries/s':>11}")
    for together in (False, True):
        mode = "propose_batch" if together else "propose xN"
        for b in args.batches:
            runs = [
                run(b, args.seconds, args.payload, args.max_size_per_msg, together)
                for _ in range(args.repeat)
            ]
            n, el = max(runs, key=lambda r: r[0] / r[1])
            print(f"{mode:>14} {b:>7} {n:>10} {el:>8.2f} {n / el:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
