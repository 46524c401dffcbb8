"""Header blocks decoded once: hpack's decoder, remembering what repeated blocks decode to.

Theory of operation. A gRPC client sends nearly the same headers with every call, and after
the first call of a method most clients (grpc-go, grpcio) send them as references into the
HPACK dynamic table: the header block is then *byte for byte* the same each time. Decoding
it with ``hpack`` costs about 6 µs a call (pure Python, 14% of a Range's CPU, measured). A
block's meaning depends on the block and on the dynamic table, and a block that only refers
to entries leaves the table as it was; so :class:`CachingDecoder` keeps, per block, the
headers it decoded to while the table stays the same.

The table changes only by an insertion (``HeaderTable.add``, which may evict) or a size
update (``maxsize``). The decoder counts insertions (it wraps its own table's ``add``) and
compares the size, and empties the cache on any change: a cached answer is only ever given
for the table it was computed with. A block whose decoding changed the table is not cached
(decoding it again would insert again). The cache holds at most :data:`MAX_BLOCKS` blocks.
"""

from __future__ import annotations

from typing import cast

import hpack

__all__ = ["MAX_BLOCKS", "CachingDecoder"]

#: Distinct header blocks remembered per connection (then the cache starts over).
MAX_BLOCKS = 256

Headers = list[tuple[str, str]]


class CachingDecoder:
    """``hpack.Decoder`` for one connection, with decoded blocks reused (see above)."""

    def __init__(self) -> None:
        self._decoder = hpack.Decoder()
        table = self._decoder.header_table
        self._inserts = 0
        add = table.add

        def counting_add(name: bytes, value: bytes) -> None:
            self._inserts += 1
            add(name, value)

        table.add = counting_add  # type: ignore[method-assign]
        self._state = (0, table.maxsize)
        self._cache: dict[bytes, Headers] = {}

    def decode(self, block: bytes) -> Headers:
        """The headers of ``block`` (raises hpack's errors, as ``hpack.Decoder`` does)."""
        cached = self._cache.get(block)
        if cached is not None:
            return cached
        headers = cast(Headers, self._decoder.decode(block))
        state = (self._inserts, self._decoder.header_table.maxsize)
        if state != self._state:  # the table changed: earlier answers no longer hold
            self._state = state
            self._cache.clear()
        else:
            if len(self._cache) >= MAX_BLOCKS:
                self._cache.clear()
            self._cache[block] = headers
        return headers
