"""TLS for client and peer URLs, configured with etcd's flags.

Theory of operation: etcd has two independent TLS settings, one for client URLs (``--cert-file``,
``--key-file``, ``--trusted-ca-file``, ``--client-cert-auth``) and one for peer URLs (the same
with a ``--peer-`` prefix). Each is a :class:`TLSInfo`. At startup :meth:`TLSInfo.validate`
checks every named file (exists, is a PEM certificate/key that loads, the key matches the
certificate, the certificates are within their validity period) and raises
:class:`TLSConfigError` naming the flag and the file, so a bad deployment fails before it
listens. :func:`check_urls` refuses ``https://`` URLs without a certificate. Then:

* :meth:`TLSInfo.server_context` is the ``ssl.SSLContext`` for listeners: it presents the
  certificate, offers ALPN ``h2`` and ``http/1.1`` (gRPC and the JSON gateway share the port),
  and with ``client_cert_auth`` *requires* a client certificate signed by the trusted CA (the
  handshake fails otherwise); with only a trusted CA it verifies a certificate if one is sent.
* :meth:`TLSInfo.client_context` is what a member uses to dial its peers: it presents the peer
  certificate (for ``--peer-client-cert-auth`` on the other side) and verifies the peer's server
  certificate against the trusted CA and the URL's host name/IP.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSListener

__all__ = [
    "TLSConfigError",
    "TLSInfo",
    "address",
    "check_urls",
    "handshake_error",
    "is_tls_url",
    "tls_listener",
]

log = logging.getLogger(__name__)


class TLSConfigError(ValueError):
    """A TLS flag names a missing, unreadable, malformed or expired file, or is inconsistent."""


@dataclass(frozen=True)
class TLSInfo:
    """One side's TLS settings (client or peer). ``prefix`` is ``""`` or ``"peer-"`` (messages)."""

    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    prefix: str = ""

    @property
    def empty(self) -> bool:
        """True when no certificate is configured (plain-text only)."""
        return not self.cert_file and not self.key_file

    def _flag(self, name: str) -> str:
        return f"--{self.prefix}{name}"

    def validate(self) -> None:
        """Check the files and flag combinations; raise :class:`TLSConfigError` naming the file."""
        if bool(self.cert_file) != bool(self.key_file):
            have, missing = (
                ("cert-file", "key-file") if self.cert_file else ("key-file", "cert-file")
            )
            raise TLSConfigError(f"{self._flag(have)} is set but {self._flag(missing)} is not")
        if self.client_cert_auth and not self.trusted_ca_file:
            raise TLSConfigError(
                f"{self._flag('client-cert-auth')} requires {self._flag('trusted-ca-file')}"
            )
        if self.client_cert_auth and self.empty:
            raise TLSConfigError(
                f"{self._flag('client-cert-auth')} requires "
                f"{self._flag('cert-file')} and {self._flag('key-file')}"
            )
        for flag, path in (
            ("cert-file", self.cert_file),
            ("key-file", self.key_file),
            ("trusted-ca-file", self.trusted_ca_file),
        ):
            if path:
                _check_readable(self._flag(flag), path)
        if self.cert_file:
            _check_validity(self._flag("cert-file"), self.cert_file)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file)
            except ssl.SSLError as e:
                raise TLSConfigError(
                    f"cannot load {self._flag('cert-file')} {self.cert_file} with "
                    f"{self._flag('key-file')} {self.key_file}: {_why(e)} (not PEM, or the key "
                    "does not match the certificate)"
                ) from None
        if self.trusted_ca_file:
            _check_validity(self._flag("trusted-ca-file"), self.trusted_ca_file)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            try:
                ctx.load_verify_locations(cafile=self.trusted_ca_file)
            except ssl.SSLError as e:
                raise TLSConfigError(
                    f"cannot load {self._flag('trusted-ca-file')} {self.trusted_ca_file}: {_why(e)}"
                ) from None

    def server_context(self, alpn: Iterable[str] = ("http/1.1", "h2")) -> ssl.SSLContext:
        """SSLContext for a listener (requires a certificate; call :meth:`validate` first)."""
        if self.empty:
            raise TLSConfigError(
                f"{self._flag('cert-file')} and {self._flag('key-file')} "
                "are required for https URLs"
            )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.trusted_ca_file:
            ctx.load_verify_locations(cafile=self.trusted_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED if self.client_cert_auth else ssl.CERT_OPTIONAL
        alpn = list(alpn)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def client_context(self, alpn: Iterable[str] = ()) -> ssl.SSLContext:
        """SSLContext for dialing a server of this side (peers): verify it, present our cert."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.trusted_ca_file:
            ctx.load_verify_locations(cafile=self.trusted_ca_file)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if not self.empty:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        alpn = list(alpn)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx


def check_urls(flag: str, urls: Iterable[str], info: TLSInfo) -> None:
    """Refuse ``https://`` URLs in ``flag`` when ``info`` has no certificate (as etcd does)."""
    for url in urls:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https", "unix", "unixs"):
            raise TLSConfigError(f"{flag}: URL scheme must be http or https: {url}")
        if scheme in ("https", "unixs") and info.empty:
            raise TLSConfigError(
                f"TLS key/cert ({info._flag('cert-file')}, {info._flag('key-file')}) must be "
                f"provided for {flag} URL {url} with HTTPS scheme"
            )


def _why(e: ssl.SSLError) -> str:
    return str(e.reason or e.strerror or e)


def _check_readable(flag: str, path: str) -> None:
    if not os.path.exists(path):
        raise TLSConfigError(f"{flag}: open {path}: no such file or directory")
    if not os.path.isfile(path):
        raise TLSConfigError(f"{flag}: {path} is not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TLSConfigError(f"{flag}: cannot read {path}: {e.strerror}") from None
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"{flag}: {path} is not a PEM file (no -----BEGIN line)")


def _check_validity(flag: str, path: str) -> None:
    """Reject a (first) certificate outside its validity period."""
    decode: Any = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:  # pragma: no cover - CPython always has it; skip the check elsewhere
        return
    try:
        info = decode(path)
    except (ssl.SSLError, OSError, ValueError) as e:
        raise TLSConfigError(f"{flag}: {path} does not hold a valid PEM certificate: {e}") from None
    now = time.time()
    not_after = info.get("notAfter")
    not_before = info.get("notBefore")
    if not_after and ssl.cert_time_to_seconds(not_after) < now:
        raise TLSConfigError(f"{flag}: certificate {path} expired at {not_after}")
    if not_before and ssl.cert_time_to_seconds(not_before) > now:
        raise TLSConfigError(f"{flag}: certificate {path} is not valid before {not_before}")


def is_tls_url(url: str) -> bool:
    """True for ``https://`` (and ``unixs://``) URLs."""
    return urlsplit(url).scheme.lower() in ("https", "unixs")


#: OpenSSL reasons, as Go's crypto/tls words them.
_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "tls: client didn't provide a certificate",
    "CERTIFICATE_VERIFY_FAILED": "tls: failed to verify certificate",
    "NO_SHARED_CIPHER": "tls: no cipher suite supported by both client and server",
    "UNSUPPORTED_PROTOCOL": "tls: client offered only unsupported versions",
    "WRONG_VERSION_NUMBER": "tls: first record does not look like a TLS handshake",
}


def handshake_error(exc: BaseException) -> str:
    """Why a server-side TLS handshake failed, in one line (Go's wording where it has one)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: failed to verify certificate: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "")
        if reason in _REASONS:
            return _REASONS[reason]
        if reason.startswith(("TLSV1_ALERT_", "SSLV3_ALERT_")):
            # the client refused *our* certificate (or something else) and said so
            alert = reason.split("_ALERT_", 1)[1].lower().replace("_", " ")
            return f"remote error: tls: {alert}"
        return f"tls: {reason.lower().replace('_', ' ') or exc}"
    if isinstance(exc, (ConnectionError, EOFError, anyio.EndOfStream, anyio.BrokenResourceError)):
        return "EOF (the client closed the connection during the handshake)"
    return str(exc) or type(exc).__name__


def address(addr: Any) -> str:
    """A socket address as ``host:port`` (``[v6]:port``), as Go prints it."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
        return f"{host}:{addr[1]}"
    return str(addr)


class _PeerTLSListener(TLSListener):
    """anyio's TLSListener, logging a refused handshake as one warning line (not a traceback):
    a member with a certificate from another CA retries every second."""

    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: Any) -> None:
        remote = None  # read before closing: a closed socket has no peer address
        with contextlib.suppress(Exception):
            remote = stream.extra(anyio.abc.SocketAttribute.remote_address)
        await anyio.aclose_forcefully(stream)
        if not isinstance(exc, Exception) or isinstance(exc, anyio.get_cancelled_exc_class()):
            raise exc
        cause = exc.__cause__ if exc.__cause__ is not None else exc  # anyio may wrap it
        log.warning("peer TLS handshake error from %s: %s", address(remote), handshake_error(cause))


def tls_listener(
    listener: anyio.abc.Listener[Any], ctx: ssl.SSLContext, handshake_timeout: float = 5.0
) -> anyio.abc.Listener[Any]:
    """Wrap an anyio listener so every accepted connection is a TLS server stream."""
    return _PeerTLSListener(
        listener, ctx, standard_compatible=False, handshake_timeout=handshake_timeout
    )
