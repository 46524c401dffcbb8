"""Multi-process recipe tests: real worker processes (worker.py), kill -9, short TTLs.

Times in the workers' logs are ``time.monotonic()`` (CLOCK_MONOTONIC, shared by all
processes on Linux), so the test can compare intervals recorded by different processes.
"""

from __future__ import annotations

import itertools
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from support import Proc, wait_for

from coord import AsyncClient, Client
from coord.recipes import Barrier, WorkQueue

TTL = 2
WORKER = Path(__file__).with_name("worker.py")


class Workers:
    """Starts worker.py processes (cwd outside the repo) and stops them all at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []

    def start(self, *args: str) -> Proc:
        n = len(self.procs)
        proc = Proc([sys.executable, str(WORKER), *args], self.tmp / f"worker{n}.log", cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in self.procs:
            p.kill()
            p.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path)
    yield w
    w.stop_all()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def last_match(pattern: str, text: str) -> re.Match[str] | None:
    found = list(re.finditer(pattern, text, re.M))
    return found[-1] if found else None


def test_lock_8_processes_50_increments_each(
    backend: str, prefix: str, tmp_path: Path, workers: Workers
) -> None:
    counter, log = tmp_path / "counter", tmp_path / "intervals"
    counter.write_text("0")
    procs = [
        workers.start("lock-inc", backend, prefix + "jobs", str(counter), str(log), "50", str(TTL))
        for _ in range(8)
    ]
    wait_for(
        lambda: not any(p.alive() for p in procs),
        timeout=240,
        interval=0.2,
        what="all incrementers finished",
    )
    assert [p.popen.returncode for p in procs] == [0] * 8, procs[0].output()
    assert counter.read_text() == "400"
    intervals = sorted(tuple(map(float, line.split())) for line in lines(log))
    assert len(intervals) == 400
    for (_, prev_exit, prev_token), (enter, _, token) in itertools.pairwise(intervals):
        assert enter >= prev_exit, "two holders inside the lock at once"
        assert token > prev_token, "fencing tokens must increase with every grant"


@pytest.mark.compat
def test_kill_9_holder_next_waiter_within_ttl(backend: str, prefix: str, workers: Workers) -> None:
    name = prefix + "jobs"
    holder = workers.start("lock-hold", backend, name, str(TTL))
    wait_for(lambda: "HELD" in holder.output(), timeout=30, what="holder has the lock")
    held_token = int(holder.output().split()[1])
    waiter = workers.start("lock-wait", backend, name, str(TTL))
    with Client(backend) as client:
        wait_for(lambda: len(client.get_prefix(name + "/")) == 2, timeout=30, what="waiter queued")
    killed_at = time.monotonic()
    holder.kill(signal.SIGKILL)
    wait_for(lambda: "ACQUIRED" in waiter.output(), timeout=TTL + 5, what="waiter acquires")
    m = last_match(r"^ACQUIRED (\d+) ([\d.]+)$", waiter.output())
    assert m is not None
    assert int(m.group(1)) > held_token
    assert float(m.group(2)) - killed_at <= TTL + 1


@pytest.mark.compat
def test_election_kill_9_leader(backend: str, prefix: str, workers: Workers) -> None:
    name = prefix + "leader"
    observer = workers.start("observe", backend, name)
    first = workers.start("campaign", backend, name, "first", str(TTL))
    wait_for(lambda: "LEADER first" in first.output(), timeout=30, what="first elected")
    second = workers.start("campaign", backend, name, "second", str(TTL))
    with Client(backend) as client:
        wait_for(
            lambda: len(client.get_prefix(name + "/")) == 2, timeout=30, what="second campaigns"
        )
    assert "LEADER" not in second.output()
    killed_at = time.monotonic()
    first.kill(signal.SIGKILL)
    wait_for(lambda: "LEADER second" in second.output(), timeout=TTL + 5, what="second elected")
    m = last_match(r"^LEADER second ([\d.]+)$", second.output())
    assert m is not None
    assert float(m.group(1)) - killed_at <= TTL + 1
    wait_for(
        lambda: "OBSERVED second" in observer.output(), timeout=10, what="observer sees second"
    )
    observed = re.findall(r"^OBSERVED (\w+)", observer.output(), re.M)
    assert observed == ["first", "second"]


def test_workqueue_1000_items_4_workers_one_killed(
    backend: str, prefix: str, tmp_path: Path, workers: Workers
) -> None:
    name = prefix + "wq"

    async def produce() -> None:
        async with AsyncClient(backend) as aclient:
            queue = WorkQueue(aclient, name)

            async def put_range(start: int) -> None:
                for i in range(start, 1000, 10):
                    await queue.put(str(i))

            async with anyio.create_task_group() as tg:
                for start in range(10):
                    tg.start_soon(put_range, start)

    anyio.run(produce)
    outs = [tmp_path / f"acked{i}" for i in range(4)]
    # worker 0 is slow, so it is almost surely mid-item when it is killed
    procs = [
        workers.start(
            "workqueue", backend, name, str(TTL), str(outs[i]), "0.3" if i == 0 else "0.002"
        )
        for i in range(4)
    ]
    victim = procs[0]
    wait_for(
        lambda: victim.output().count("PROCESSING") >= 3,
        timeout=60,
        what="victim processed a few items",
    )
    victim.kill(signal.SIGKILL)
    in_flight = last_match(r"^PROCESSING (\d+)$", victim.output())
    assert in_flight is not None
    wait_for(
        lambda: not any(p.alive() for p in procs[1:]),
        timeout=240,
        interval=0.2,
        what="surviving workers drained the queue",
    )
    assert [p.popen.returncode for p in procs[1:]] == [0, 0, 0]
    records = [line.split() for out in outs for line in lines(out)]
    values = [int(v) for v, _ in records]
    assert set(values) == set(range(1000)), "an item was lost"
    redelivered = sorted({int(v) for v, d in records if int(d) > 1})
    assert int(in_flight.group(1)) in redelivered
    with Client(backend) as client:
        assert client.get_prefix(name + "/") == []  # every item acked; no dead letters
    print(f"workqueue: {len(records)} records, {len(redelivered)} redelivered: {redelivered}")


def test_barrier_5_processes(backend: str, prefix: str, workers: Workers) -> None:
    name = prefix + "barrier"
    with Client(backend) as client:
        barrier = Barrier(client, name)
        assert barrier.hold()
        procs = [workers.start("barrier-wait", backend, name) for _ in range(5)]
        wait_for(
            lambda: all("WAITING" in p.output() for p in procs), timeout=60, what="all waiting"
        )
        released_at = time.monotonic()
        barrier.release()
        wait_for(lambda: all("PASSED" in p.output() for p in procs), timeout=30, what="all passed")
    for p in procs:
        m = last_match(r"^PASSED ([\d.]+)$", p.output())
        assert m is not None
        assert float(m.group(1)) >= released_at


def test_double_barrier_5_processes(
    backend: str, prefix: str, tmp_path: Path, workers: Workers
) -> None:
    log = tmp_path / "events"
    procs = [
        workers.start("double-barrier", backend, prefix + "db", "5", str(log)) for _ in range(5)
    ]
    wait_for(lambda: not any(p.alive() for p in procs), timeout=120, what="all left")
    assert [p.popen.returncode for p in procs] == [0] * 5
    events: dict[str, list[float]] = {}
    for line in lines(log):
        kind, t = line.split()
        events.setdefault(kind, []).append(float(t))
    assert {k: len(v) for k, v in events.items()} == {
        "arrive": 5,
        "enter": 5,
        "leave-start": 5,
        "left": 5,
    }
    assert min(events["enter"]) >= max(events["arrive"])
    assert min(events["left"]) >= max(events["leave-start"])


def test_semaphore_3_of_10_processes(
    backend: str, prefix: str, tmp_path: Path, workers: Workers
) -> None:
    log = tmp_path / "intervals"
    procs = [
        workers.start("semaphore", backend, prefix + "sem", "3", str(log), "3") for _ in range(10)
    ]
    wait_for(lambda: not any(p.alive() for p in procs), timeout=180, interval=0.2, what="all done")
    assert [p.popen.returncode for p in procs] == [0] * 10
    points = []
    for line in lines(log):
        enter, leave = map(float, line.split())
        points += [(enter, 1), (leave, -1)]
    assert len(points) == 60
    inside = peak = 0
    for _, delta in sorted(points, key=lambda p: (p[0], p[1])):
        inside += delta
        peak = max(peak, inside)
    assert peak <= 3
    print(f"semaphore: peak holders {peak}")
