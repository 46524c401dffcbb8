"""Status on a fresh member reports a database size, as etcd always does."""

from __future__ import annotations

import json
from pathlib import Path

from support import CoordProc, etcdctl


def test_fresh_member_reports_db_size(tmp_path: Path) -> None:
    proc = CoordProc(tmp_path)
    try:
        status = json.loads(etcdctl(proc.endpoint, "endpoint", "status", "-w", "json").stdout)
        first = status[0]["Status"]
        assert first["dbSize"] > 0  # the WAL exists from the first moment
        assert "dbSizeInUse" not in first or first["dbSizeInUse"] <= first["dbSize"]
        etcdctl(proc.endpoint, "put", "k", "v" * 1000)
        after = json.loads(etcdctl(proc.endpoint, "endpoint", "status", "-w", "json").stdout)
        assert after[0]["Status"]["dbSizeInUse"] >= 1000
        assert after[0]["Status"]["dbSize"] >= after[0]["Status"]["dbSizeInUse"]
    finally:
        proc.stop()
