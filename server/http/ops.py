"""The operator's HTTP endpoints beside etcd's gateway: ``/metrics``, ``/v2/stats/self``,
``/v2/stats/leader``, and the dashboard (``/dashboard`` and its one JSON endpoint).

Theory of operation: :class:`OpsRoutes` answers a request for one of its paths with
``(status, body, content type)``; the gateway asks it before etcd's routes. The dashboard is
three static files shipped in the wheel (``dashboard/``: HTML, plain JavaScript that draws its
charts as SVG, CSS; no build step), read once when the server starts. The page polls
``/dashboard/api/cluster`` (:meth:`coord.server.overview.Overview.cluster`) and browses keys
through etcd's own JSON API (``/v3/kv/range``, ``/v3/watch``), so it reads only what any
client may read. A metrics-only listener (``--listen-metrics-urls``) builds one with
``metrics`` alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources

from coord.server.overview import Overview

__all__ = ["OpsRoutes"]

Answer = tuple[int, bytes, str]

_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


def _load_assets() -> dict[str, tuple[bytes, str]]:
    root = resources.files("coord.server.http") / "dashboard"
    return {name: ((root / name).read_bytes(), ctype) for name, ctype in _ASSETS.items()}


class OpsRoutes:
    """See the module docstring."""

    def __init__(
        self,
        metrics: Callable[[], tuple[bytes, str]] | None,
        overview: Overview | None = None,
    ) -> None:
        self._metrics = metrics
        self._overview = overview
        self._assets = _load_assets() if overview is not None else {}

    def serves(self, path: str) -> bool:
        if path == "/metrics":
            return self._metrics is not None
        if self._overview is None:
            return False
        return path in ("/v2/stats/self", "/v2/stats/leader") or (
            path == "/dashboard" or path.startswith("/dashboard/")
        )

    async def answer(self, method: str, path: str) -> Answer:
        """The answer for a path :meth:`serves`."""
        if path == "/metrics" and self._metrics is not None:  # any method, as etcd's promhttp
            body, ctype = self._metrics()
            return 200, body, ctype
        if method not in ("GET", "HEAD"):
            return 405, b"Method Not Allowed\n", _TEXT
        overview = self._overview
        assert overview is not None  # serves() said so
        if path == "/v2/stats/self":
            return 200, json.dumps(overview.v2_self()).encode(), _JSON
        if path == "/v2/stats/leader":
            stats = overview.v2_leader()
            if stats is None:  # etcd v2: 403 on a follower
                return 403, json.dumps({"message": "not current leader"}).encode(), _JSON
            return 200, json.dumps(stats).encode(), _JSON
        if path == "/dashboard/api/cluster":
            data = await overview.cluster()
            return 200, json.dumps(data).encode(), _JSON
        name = path.removeprefix("/dashboard").lstrip("/") or "index.html"
        asset = self._assets.get(name)
        if asset is None:
            return 404, b"Not Found\n", _TEXT
        return 200, *asset
