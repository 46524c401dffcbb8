"""The watch hub: fan-out of store changes to watch streams (pushed while synced, pulled
from history while catching up)."""

from .hub import WatchHub, WatchStream

__all__ = ["WatchHub", "WatchStream"]
