"""Worker processes for the multi-process recipe tests (``python worker.py <command> ...``).

Each command uses the synchronous client, prints progress lines (flushed) that the tests
poll for, and appends machine-readable records to a log file where the test needs them.
Times are ``time.monotonic()`` (CLOCK_MONOTONIC: comparable across processes on Linux).
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from coord import Client
from coord.recipes import Barrier, DoubleBarrier, Election, Lock, Semaphore, WorkQueue


def say(*parts: object) -> None:
    print(*parts, flush=True)


def append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()


def lock_inc(ep: str, name: str, counter: str, log: str, n: str, ttl: str) -> None:
    with Client(ep) as client:
        for _ in range(int(n)):
            with Lock(client, name, ttl=int(ttl)) as lock:
                enter = time.monotonic()
                value = int(Path(counter).read_text() or "0")
                Path(counter).write_text(str(value + 1))
                leave = time.monotonic()
                append(log, f"{enter} {leave} {lock.fencing_token}")


def lock_hold(ep: str, name: str, ttl: str) -> None:
    client = Client(ep)
    lock = Lock(client, name, ttl=int(ttl))
    lock.acquire()
    say("HELD", lock.fencing_token, time.monotonic())
    time.sleep(3600)


def lock_wait(ep: str, name: str, ttl: str) -> None:
    with Client(ep) as client:
        lock = Lock(client, name, ttl=int(ttl))
        say("WAITING")
        lock.acquire()
        say("ACQUIRED", lock.fencing_token, time.monotonic())
        lock.release()


def campaign(ep: str, name: str, value: str, ttl: str) -> None:
    client = Client(ep)
    election = Election(client, name, ttl=int(ttl))
    say("CAMPAIGNING")
    election.campaign(value)
    say("LEADER", value, time.monotonic())
    time.sleep(3600)


def observe(ep: str, name: str) -> None:
    with Client(ep) as client:
        for kv in Election(client, name).observe():
            say("OBSERVED", kv.value.decode(), time.monotonic())


def workqueue(ep: str, name: str, ttl: str, out: str, delay: str) -> None:
    with Client(ep) as client, WorkQueue(client, name, ttl=int(ttl), max_deliveries=100) as queue:
        say("STARTED")
        while True:
            item = queue.get(timeout=1.0)
            if item is None:
                if queue.size() == 0:
                    break
                continue
            say("PROCESSING", item.value.decode())
            time.sleep(float(delay))
            append(out, f"{item.value.decode()} {item.deliveries}")
            item.ack()
    say("DONE")


def barrier_wait(ep: str, name: str) -> None:
    with Client(ep) as client:
        barrier = Barrier(client, name)
        say("WAITING")
        assert barrier.wait(timeout=60)
        say("PASSED", time.monotonic())


def double_barrier(ep: str, name: str, n: str, log: str) -> None:
    with Client(ep) as client:
        barrier = DoubleBarrier(client, name, int(n), ttl=5)
        append(log, f"arrive {time.monotonic()}")
        assert barrier.enter(timeout=60)
        append(log, f"enter {time.monotonic()}")
        time.sleep(random.uniform(0, 0.3))
        append(log, f"leave-start {time.monotonic()}")
        assert barrier.leave(timeout=60)
        append(log, f"left {time.monotonic()}")


def semaphore(ep: str, name: str, n: str, log: str, rounds: str) -> None:
    with Client(ep) as client:
        sem = Semaphore(client, name, int(n), ttl=5)
        for _ in range(int(rounds)):
            with sem:
                enter = time.monotonic()
                time.sleep(random.uniform(0.01, 0.05))
                append(log, f"{enter} {time.monotonic()}")


COMMANDS: dict[str, Callable[..., None]] = {
    "lock-inc": lock_inc,
    "lock-hold": lock_hold,
    "lock-wait": lock_wait,
    "campaign": campaign,
    "observe": observe,
    "workqueue": workqueue,
    "barrier-wait": barrier_wait,
    "double-barrier": double_barrier,
    "semaphore": semaphore,
}

if __name__ == "__main__":
    # client-side diagnostics (stream breaks, endpoint rotation) land in the worker's log
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("coord").setLevel(logging.INFO)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
