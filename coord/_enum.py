"""``NamedIntEnum``: an ``IntEnum`` that prints its name.

Python 3.11 made ``str()`` and ``format()`` of an ``IntEnum`` member give its value
(``print(EventType.PUT)`` prints ``0``). coord's public enums are read by people in logs and
prints, so they print their names (``PUT``) while staying ints everywhere else: comparison,
arithmetic, ``int()``, JSON, and ``format()`` with a numeric spec (``f"{t:d}"`` is ``0``).
"""

from __future__ import annotations

import enum

__all__ = ["NamedIntEnum"]


class NamedIntEnum(enum.IntEnum):
    """An ``IntEnum`` whose ``str()`` (and plain ``format()``) is the member's name."""

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        return (
            self.name.__format__(spec)
            if not spec or spec[-1] not in "bcdoxXneEfFgG%"
            else int(self).__format__(spec)
        )
