"""Package layout: server/ installs as coord.server and recipes/ as coord.recipes.

Everything else lives in pyproject.toml; this file only computes the package list, which
pyproject.toml cannot express for mapped directories.
"""

from setuptools import find_packages, setup

MAPPED = {"coord": "coord", "coord.server": "server", "coord.recipes": "recipes"}
packages = [
    f"{name}.{sub}" if sub else name
    for name, folder in MAPPED.items()
    for sub in ["", *find_packages(folder)]
]
setup(packages=packages, package_dir=MAPPED)
