"""Source checkouts: ``coord.server`` and ``coord.recipes`` from the folders beside ``coord/``.

An installed coord holds both subpackages (setup.py maps ``server/`` to ``coord.server`` and
``recipes/`` to ``coord.recipes``). Python run in a checkout's root imports the source folder
``coord/`` instead, and there the two are its siblings. :func:`install` then adds an import
finder for exactly those two names, so ``import coord.recipes`` finds ``../recipes``; in an
installed coord it does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["install"]

#: subpackage -> its folder in a checkout (setup.py's package_dir)
MAPPED = {"coord.server": "server", "coord.recipes": "recipes"}


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``coord.server`` and ``coord.recipes`` in a checkout's root."""

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        folder = MAPPED.get(fullname)
        if folder is None:
            return None
        where = os.path.join(self.root, folder)
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(where, "__init__.py"), submodule_search_locations=[where]
        )


def install(package_dir: str) -> None:
    """Add the finder when ``package_dir`` (coord's folder) lies in a source checkout."""
    root = os.path.dirname(os.path.abspath(package_dir))
    in_checkout = os.path.isfile(os.path.join(root, "setup.py")) and all(
        os.path.isfile(os.path.join(root, folder, "__init__.py")) for folder in MAPPED.values()
    )
    installed = os.path.isdir(os.path.join(package_dir, "server"))
    if (
        in_checkout
        and not installed
        and not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path)
    ):
        sys.meta_path.append(_CheckoutFinder(root))
