"""Counter: a shared integer with atomic add, by txn compare-and-swap.

:Status: Production-ready.

Theory of operation
-------------------
The counter is one key, ``name``, holding the value as decimal ASCII (absent = 0, so
``etcdctl get`` shows it). :meth:`~AsyncCounter.add` reads the key and writes the new value
with ``If(ModRevision(name) == seen)`` (``== 0`` when absent); if another writer got in first
the txn fails and it retries with the value the failed txn read back (the txn's failure
branch is a Get, so a retry costs one round trip). No update is ever lost.

Error handling
--------------
* A non-integer value under the key raises ``ValueError``.
* ``add`` retries without bound under contention; it is lock-free (some writer always
  succeeds).
"""

from __future__ import annotations

from typing import Any, overload

from coord import AsyncClient, Client, Get, ModRevision, Put
from coord.types import KeyValue

from ._sync import bridge_of, is_async_client
from ._wait import to_bytes

__all__ = ["AsyncCounter", "Counter", "SyncCounter"]


class Counter:
    """A shared counter. ``Counter(client, name)`` returns a sync or async face."""

    @overload
    def __new__(cls, client: Client, name: str | bytes) -> SyncCounter: ...
    @overload
    def __new__(cls, client: AsyncClient, name: str | bytes) -> AsyncCounter: ...
    def __new__(cls, client: Any, name: str | bytes) -> Any:
        if cls is Counter:
            cls = AsyncCounter if is_async_client(client) else SyncCounter
        return object.__new__(cls)


def _value(kv: KeyValue | None) -> int:
    return int(kv.value) if kv is not None and kv.value else 0


class AsyncCounter(Counter):
    """The counter on an :class:`~coord.AsyncClient` (see :class:`Counter`)."""

    def __init__(self, client: AsyncClient, name: str | bytes) -> None:
        self.client = client
        self.key = to_bytes(name)

    async def get(self) -> int:
        """The current value (0 if never set)."""
        return _value(await self.client.get(self.key))

    async def add(self, delta: int = 1) -> int:
        """Add ``delta`` atomically; returns the new value."""
        kv = await self.client.get(self.key)
        while True:
            new = _value(kv) + delta
            seen = kv.mod_revision if kv is not None else 0
            ok, results = await self.client.txn(
                compare=[ModRevision(self.key) == seen],
                success=[Put(self.key, str(new))],
                failure=[Get(self.key)],
            )
            if ok:
                return new
            found: list[KeyValue] = results[0]
            kv = found[0] if found else None

    async def set(self, value: int) -> None:
        """Overwrite the value."""
        await self.client.put(self.key, str(value))


class SyncCounter(Counter):
    """The counter on a sync :class:`~coord.Client` (see :class:`Counter`)."""

    def __init__(self, client: Client, name: str | bytes) -> None:
        self._bridge = bridge_of(client)
        self.impl = AsyncCounter(self._bridge.aclient, name)

    def get(self) -> int:
        """The current value (0 if never set)."""
        return int(self._bridge.call(self.impl.get))

    def add(self, delta: int = 1) -> int:
        """Add ``delta`` atomically; returns the new value."""
        return int(self._bridge.call(self.impl.add, delta))

    def set(self, value: int) -> None:
        """Overwrite the value."""
        self._bridge.call(self.impl.set, value)
