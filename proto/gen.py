"""Regenerate coord/_pb from the .proto files in this folder.

    python proto/gen.py            # rewrite coord/_pb
    python proto/gen.py --check    # exit 1 if the committed code differs from a fresh generation

Uses betterproto2-compiler (pinned with betterproto2 in pyproject.toml) through grpcio-tools'
protoc. The generated package is committed and never edited by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "coord" / "_pb"
PROTOS = [
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
]
OPTIONS = "client_generation=async,server_generation=async"


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The plugin (protoc-gen-python_betterproto2) and ruff live beside this interpreter.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{HERE}",
            f"--python_betterproto2_out={out}",
            f"--python_betterproto2_opt={OPTIONS}",
            *PROTOS,
        ],
        check=True,
        env=env,
        cwd=out,  # outside the repo, so the plugin's ruff run ignores our ruff settings
    )
    (out / "__init__.py").touch()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "_pb"
        generate(fresh)
        if args.check:
            committed, new = _tree(TARGET), _tree(fresh)
            if committed != new:
                names = committed.keys() | new.keys()
                changed = sorted(k for k in names if committed.get(k) != new.get(k))
                print(
                    "coord/_pb is stale; run `python proto/gen.py`. Differs:", *changed, sep="\n  "
                )
                return 1
            print("coord/_pb matches a fresh generation")
            return 0
        shutil.rmtree(TARGET, ignore_errors=True)
        shutil.copytree(fresh, TARGET)
        print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
