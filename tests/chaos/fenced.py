"""A fenced resource shared by lock worker processes: a register that refuses stale tokens.

Theory of operation
-------------------
The register lives in one file guarded by an exclusive ``flock``, so separate OS processes
see one atomic check-and-set: :meth:`FencedRegister.write` accepts a write only if its fencing
token is at least the highest token accepted so far, and appends every attempt (accepted or
rejected, with token, pid and ``time.monotonic()``) to the register's log. This is the
"storage service that checks fencing tokens" of the fencing-token argument: with it, a holder
that lost its lock without noticing cannot overwrite a newer holder's writes.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["FencedRegister"]


class FencedRegister:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.log = path.with_suffix(".log")

    def write(self, token: int, value: str) -> bool:
        """Write ``value`` under ``token``; False (and nothing written) if the token is stale."""
        with open(self.path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.seek(0)
                text = f.read()
                highest = int(json.loads(text)["token"]) if text else 0
                ok = token >= highest
                if ok:
                    f.seek(0)
                    f.truncate()
                    f.write(json.dumps({"token": token, "value": value}))
                    f.flush()
                with open(self.log, "a") as lg:
                    lg.write(
                        json.dumps(
                            {
                                "t": time.monotonic(),
                                "pid": os.getpid(),
                                "token": token,
                                "value": value,
                                "accepted": ok,
                            }
                        )
                        + "\n"
                    )
                return ok
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def attempts(self) -> list[dict[str, Any]]:
        """Every write attempt in the order the register decided them."""
        if not self.log.exists():
            return []
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]
