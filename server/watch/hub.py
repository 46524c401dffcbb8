"""WatchHub (skeleton; implementation follows)."""

from __future__ import annotations

from collections.abc import Callable

from coord._pb.etcdserverpb import WatchRequest
from coord.server.mvcc import KVStore

__all__ = ["WatchHub", "WatchStream"]


class WatchStream:
    """One Watch RPC stream carrying many watchers."""

    def handle_request(self, req: WatchRequest) -> None:
        """Process a create/cancel/progress request; queues responses and calls wakeup."""
        raise NotImplementedError

    def next_responses(self, max_bytes: int) -> list[bytes]:
        """Encoded WatchResponse messages ready to send (about ``max_bytes`` at most)."""
        raise NotImplementedError

    def tick_progress(self) -> None:
        """Queue progress notifications for idle, synced progress_notify watchers."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop every watcher of the stream."""
        raise NotImplementedError


class WatchHub:
    """Owns all watch streams over one KVStore."""

    def __init__(self, store: KVStore, header: Callable[[int], bytes]) -> None:
        raise NotImplementedError

    def open_stream(self, wakeup: Callable[[], None]) -> WatchStream:
        """Open a stream; ``wakeup()`` is called whenever it may have something to send."""
        raise NotImplementedError

    def set_store(self, store: KVStore) -> None:
        """Switch to a new store (after a snapshot restore)."""
        raise NotImplementedError
