"""Public enums print their names (``PUT``, not ``0``) and still behave as ints.

Python 3.11 made ``str()`` of an ``IntEnum`` its value; every enum coord or its recipes
export must print its name instead (``print(event.type)`` in docs/client.md shows ``PUT``).
"""

from __future__ import annotations

import enum
import importlib
import json
import pkgutil

import pytest

import coord
import coord.recipes
from coord import Client, EventType
from coord.errors import Status


def _public_enums() -> set[type[enum.Enum]]:
    found: set[type[enum.Enum]] = set()
    for pkg in (coord, coord.recipes):
        mods = [pkg] + [
            importlib.import_module(f"{pkg.__name__}.{m.name}")
            for m in pkgutil.iter_modules(pkg.__path__)
            if not m.name.startswith("_")
        ]
        for mod in mods:
            for name in getattr(mod, "__all__", ()):
                obj = getattr(mod, name)
                if isinstance(obj, type) and issubclass(obj, enum.Enum):
                    found.add(obj)
    return found


def test_every_public_enum_prints_its_name() -> None:
    enums = _public_enums()
    assert {EventType, Status} <= enums
    for cls in enums:
        for member in cls:
            assert str(member) == member.name, (cls, member)
            assert f"{member}" == member.name
            assert f"{member:>20}" == f"{member.name:>20}"
            if isinstance(member, int):  # still an int everywhere else
                assert member == int(member)
                assert f"{member:d}" == str(int(member))
                assert json.dumps(member) == str(int(member))


def test_watch_event_type_prints_name(
    client: Client, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rev = client.put(prefix + "k", "v")
    client.delete(prefix + "k")
    with client.watch(prefix + "k", start_revision=rev) as watch:
        put, delete = next(watch), next(watch)
    print(put.type, delete.type)
    assert capsys.readouterr().out == "PUT DELETE\n"
    assert put.type == 0  # int compatibility (wire values)
    assert delete.type == 1
