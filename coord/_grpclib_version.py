"""The grpclib versions coord's use of grpclib internals was checked against.

Both compat modules (:mod:`coord._grpclib_compat` for the client, ``coord.server.grpclib_compat``
for the server) call :func:`check_version` when they are imported. This module imports only
``grpclib`` itself, so the server's check loads nothing of grpclib's client.
"""

from __future__ import annotations

import grpclib

__all__ = ["SUPPORTED_VERSIONS", "check_version"]

#: The grpclib versions whose internals the compat modules were checked against.
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.4.9",)


def check_version(who: str, compat_module: str) -> None:
    """Raise ``ImportError`` unless the installed grpclib is one of :data:`SUPPORTED_VERSIONS`.

    ``who`` names the side in the message ("coord's client", "coord-server") and
    ``compat_module`` the file that lists the internals it uses.
    """
    installed = getattr(grpclib, "__version__", "unknown")
    if installed not in SUPPORTED_VERSIONS:
        raise ImportError(
            f"coord: grpclib {installed} is installed, but {who} supports only grpclib "
            f"{', '.join(SUPPORTED_VERSIONS)}: it uses grpclib internals (see {compat_module}); "
            f"install a supported grpclib"
        )
