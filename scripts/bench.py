"""Run every benchmark against etcd on this machine and update docs/performance.md.

    python scripts/bench.py                 # all of them (about 20 minutes on 2 cores)
    python scripts/bench.py cluster client  # a subset: raft, cluster, client, recipes, snapshot

(raft prints its table; docs/raft.md records it.)

Each benchmark starts its own coord-server(s) and Debian etcd(s) on free loopback ports and
rewrites only its own section of docs/performance.md. python-etcd3 and aetcd (the client and
recipe comparisons) need incompatible protobuf versions, so they live in their own venvs
under /tmp, created here on first use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = {
    Path("/tmp/benchvenv"): ["etcd3==0.12.0", "protobuf<4", "tenacity<7"],
    Path("/tmp/aetcdvenv"): ["aetcd"],
}
DOC = str(ROOT / "docs" / "performance.md")
RUNS = {
    "raft": ["bench_raft.py"],
    # coord vs etcd, 1 and 3 members, grpcio load: KV, 100k-key Txn load and RSS, watch fan-out
    "cluster": ["bench_cluster.py", "--write-doc"],
    "client": ["bench_client.py", "--write-docs", DOC],
    "recipes": ["bench_recipes.py", "--write", DOC],
    # etcd-format snapshots: online save, restore, offline save, memory (docs/backup.md)
    "snapshot": ["bench_snapshot.py", "--write", DOC],
}


def ensure_venvs() -> None:
    for venv, packages in VENVS.items():
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)


def main() -> int:
    chosen = sys.argv[1:] or list(RUNS)
    unknown = [name for name in chosen if name not in RUNS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(RUNS)}", file=sys.stderr)
        return 2
    if {"client", "recipes"} & set(chosen):
        ensure_venvs()
    failed = []
    for name in chosen:
        script, *args = RUNS[name]
        print(f"== {name}: {script} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
