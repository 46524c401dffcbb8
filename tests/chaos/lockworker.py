"""A lock worker process: ``python lockworker.py ENDPOINTS NAME REGISTER HOLDS TTL SECONDS SEED``.

Until SECONDS have passed it repeatedly takes ``coord.recipes.Lock(NAME)`` (session TTL TTL),
and while it believes it holds the lock writes to the :class:`FencedRegister` at REGISTER
under the lock's ``fencing_token``. "Believes it holds" is checked before every write: the
lock says ``held`` and the session lease's confirmed deadline (keep-alive send time + the TTL
the server returned) has not passed. Each grant is appended to HOLDS as one JSON line:
``start`` (acquire returned), ``end`` (the last time the belief was checked true), ``token``,
``pid``. Both ends are conservative, so two overlapping intervals of different grants mean
two processes held the lock at once. Times are ``time.monotonic()``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from pathlib import Path

# tests/, as pytest's pythonpath has it (a script run under PYTHONSAFEPATH gets no sys.path[0])
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.fenced import FencedRegister
from coord import Client
from coord.recipes import Lock


def main(
    endpoints: str, name: str, register: str, holds: str, ttl: str, seconds: str, seed: str
) -> None:
    rng = random.Random(int(seed))
    reg = FencedRegister(Path(register))
    stop_at = time.monotonic() + float(seconds)
    eps = endpoints.split(",")
    first = int(seed) % len(eps)  # workers start on different members (see workloads.py)
    eps = eps[first:] + eps[:first]
    n = 0
    with Client(eps, timeout=5) as client:
        while time.monotonic() < stop_at:
            lock = Lock(client, name, ttl=int(ttl))
            try:
                if not lock.acquire(timeout=5):
                    continue
            except Exception as e:
                print("acquire failed:", repr(e), flush=True)
                time.sleep(0.2)
                continue
            start = time.monotonic()
            token = lock.fencing_token
            assert lock.impl.session is not None
            lease = lock.impl.session._lease
            end = start
            writes = rejected = 0
            # short holds give many grants; long ones (beyond the TTL) give a stalled or
            # stale leader the time to let the lease lapse under a holder that still believes
            hold = rng.uniform(0.05, 0.5) if rng.random() < 0.5 else rng.uniform(1, 4 * int(ttl))
            while True:
                now = time.monotonic()
                if now > start + hold or not (lock.held and now < lease.deadline):
                    break
                end = now
                n += 1
                if reg.write(token, f"{os.getpid()}-{n}"):
                    writes += 1
                else:
                    rejected += 1
                time.sleep(rng.uniform(0.05, 0.25))
            with open(holds, "a") as f:
                f.write(
                    json.dumps(
                        {
                            "pid": os.getpid(),
                            "token": token,
                            "start": start,
                            "end": end,
                            "writes": writes,
                            "rejected": rejected,
                        }
                    )
                    + "\n"
                )
            try:
                lock.release()
            except Exception as e:
                print("release failed:", repr(e), flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(*sys.argv[1:])
