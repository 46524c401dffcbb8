"""The watch hub: pull-based fan-out of store changes to watch streams."""

from .hub import WatchHub, WatchStream

__all__ = ["WatchHub", "WatchStream"]
