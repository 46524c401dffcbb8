"""Python run in the repository's root works: ``import coord.recipes`` and ``python -m pytest``.

There the source folder ``coord/`` comes first on ``sys.path`` and shadows the installed
package; the server and the recipes are its siblings (``server/``, ``recipes/``), which
coord/__init__.py adds to the package's search path in a checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _in_root(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}  # a user's shell
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_recipes_and_server_from_the_root() -> None:
    done = _in_root(
        "-c",
        "import coord, coord.recipes, coord.server.app\n"
        "from coord.recipes import Lock\n"
        "print(coord.__file__); print(coord.recipes.__file__)",
    )
    assert done.returncode == 0, done.stderr
    package, recipes = done.stdout.split()
    assert Path(package) == ROOT / "coord" / "__init__.py"  # the checkout, not site-packages
    assert Path(recipes) == ROOT / "recipes" / "__init__.py"


def test_python_m_pytest_collects_the_suite_from_the_root() -> None:
    done = _in_root("-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " tests collected" in done.stdout or " tests selected" in done.stdout, done.stdout
