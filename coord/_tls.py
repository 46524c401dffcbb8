"""TLS for the client: contexts built from PEM files checked up front, failures explained.

Theory of operation. :func:`make_ssl_context` reads and checks every file the caller named
(``ca_cert``, ``cert``, ``key``) when the client is created, so a typo or a wrong file fails
at once with :class:`~coord.errors.TLSConfigError` naming the parameter and the path, instead
of a bare ``FileNotFoundError`` or an OpenSSL "PEM lib" on the first call. The context
remembers the paths (:class:`ClientContext`) for the messages of :func:`explain`.

A TLS connection that fails at connect time (both transports: :mod:`coord._h2` and the asyncio
:class:`coord._conn.Connection`) is explained by :func:`explain`, which names the likely
cause: a server certificate not signed by ``ca_cert``, a hostname mismatch, a server that
requires a client certificate (or rejects the one given: it closes the connection right after
the handshake), an endpoint that does not speak TLS, or, for a plain-text client, an endpoint
that expects TLS. The retry loop raises :class:`~coord.errors.TLSHandshakeError` with it.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from .errors import TLSConfigError

__all__ = ["ClientContext", "explain", "looks_like_tls", "make_ssl_context"]


class ClientContext(ssl.SSLContext):
    """A client ``SSLContext`` that remembers which files it was made from."""

    ca_cert: str | None = None
    cert: str | None = None


def _read(param: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSConfigError(
            f"coord: {param} file {path!r} cannot be read: {e.strerror or e}"
        ) from None


def _reason(e: ssl.SSLError) -> str:
    return str(e.reason or e.args[-1] if e.args else e).replace("_", " ").lower()


def make_ssl_context(ca_cert: str | None, cert: str | None, key: str | None) -> ClientContext:
    """An HTTP/2-ready client TLS context trusting ``ca_cert`` (else the system's CAs) and
    presenting ``cert``/``key``; raises :class:`~coord.errors.TLSConfigError` when a file is
    missing, unreadable or not what its parameter needs, or the key does not match."""
    if key is not None and cert is None:
        raise TLSConfigError(
            f"coord: key file {key!r} given without cert (the certificate it belongs to)"
        )
    for param, path in (("ca_cert", ca_cert), ("cert", cert), ("key", key)):
        if path is not None:
            _read(param, path)
    ctx = ClientContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the server and its hostname
    ctx.ca_cert, ctx.cert = ca_cert, cert
    if ca_cert is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        try:
            ctx.load_verify_locations(cafile=ca_cert)
        except ssl.SSLError as e:
            raise TLSConfigError(
                f"coord: ca_cert file {ca_cert!r} holds no valid PEM certificate ({_reason(e)})"
            ) from None
    if cert is not None:
        try:  # parse the certificate alone first, to tell its faults from the key's
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
                cadata=_read("cert", cert).decode("ascii", "replace")
            )
        except (ssl.SSLError, ValueError) as e:
            reason = _reason(e) if isinstance(e, ssl.SSLError) else str(e)
            raise TLSConfigError(
                f"coord: cert file {cert!r} holds no valid PEM certificate ({reason})"
            ) from None
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as e:
            if e.reason == "KEY_VALUES_MISMATCH":
                raise TLSConfigError(
                    f"coord: key file {key or cert!r} does not match the"
                    f" certificate in cert file {cert!r}"
                ) from None
            if key is None:
                raise TLSConfigError(
                    f"coord: cert file {cert!r} holds no private key; name the key file with key="
                ) from None
            raise TLSConfigError(
                f"coord: key file {key!r} holds no valid PEM private key ({_reason(e)})"
            ) from None
    ctx.set_alpn_protocols(["h2"])
    return ctx


def looks_like_tls(data: bytes) -> bool:
    """True when ``data`` starts like a TLS record (alert or handshake, version 3.x)."""
    return len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 3


#: OpenSSL verify codes: the certificate chain does not lead to a trusted CA.
_UNTRUSTED = {2, 18, 19, 20, 21, 27}
#: OpenSSL verify codes: the certificate is not for the name or address connected to.
_MISMATCH = {62, 63, 64}
#: OpenSSL reasons seen when the peer does not speak TLS.
_NOT_TLS = {
    "WRONG_VERSION_NUMBER",
    "HTTP_REQUEST",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE",
    "UNEXPECTED_RECORD",
    "RECORD_LENGTH_MISMATCH",
}
#: OpenSSL reasons for an alert the server sent about our (missing) certificate.
_CERT_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_ACCESS_DENIED",
}


def _client_cert_cause(ctx: ssl.SSLContext) -> str:
    cert = getattr(ctx, "cert", None)
    if cert is None:
        return "the server requires a client certificate and none was given (cert=, key=)"
    return (
        f"the server rejected the client certificate {cert!r} (is it signed by a CA"
        " the server trusts, --trusted-ca-file?)"
    )


def explain(
    err: BaseException,
    ctx: ssl.SSLContext | None,
    host: str,
    *,
    after_handshake: bool = False,
    first_bytes: bytes = b"",
) -> str | None:
    """The likely cause of ``err``, raised while connecting to ``host`` with ``ctx`` (None:
    plain text); None when it is not a TLS matter. ``after_handshake``: the TLS handshake
    had completed (the server then closed or reset the connection); ``first_bytes``: what a
    plain-text client received first."""
    if isinstance(err, ConnectionRefusedError):
        return None  # nothing listens: not a TLS matter
    if ctx is None:
        if looks_like_tls(first_bytes) or (
            isinstance(err, ConnectionError | EOFError) and not first_bytes
        ):
            return (
                "the endpoint closed the connection without speaking HTTP/2: it probably"
                " expects TLS (use an https:// endpoint, or ca_cert=)"
            )
        return None
    if isinstance(err, ssl.SSLCertVerificationError):
        code = err.verify_code
        if code in _MISMATCH:
            return (
                f"the server's certificate is not valid for {host} (hostname mismatch:"
                f" {err.verify_message}); connect by a name or address it lists"
            )
        if code in _UNTRUSTED:
            ca = getattr(ctx, "ca_cert", None)
            by = f"ca_cert {ca!r}" if ca else "a CA this client trusts (give ca_cert=)"
            return (
                f"the server's certificate is not signed by {by} (certificate verify"
                f" failed: unknown CA: {err.verify_message})"
            )
        return f"the server's certificate was refused ({err.verify_message})"
    if isinstance(err, ssl.SSLError):
        reason = str(err.reason or "")
        if reason in _NOT_TLS:
            return (
                "the endpoint does not speak TLS (a plain http:// endpoint?): use its"
                " TLS port, or connect without ca_cert/https://"
            )
        if reason in _CERT_ALERTS:
            return _client_cert_cause(ctx)
        if after_handshake:
            return _client_cert_cause(ctx)
        if isinstance(err, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
            return _CLOSED_IN_HANDSHAKE
        return f"TLS failed ({_reason(err)})"
    if isinstance(err, ConnectionError | EOFError):
        if after_handshake:
            return (
                f"{_client_cert_cause(ctx)}; the server closed the connection right after"
                " the TLS handshake"
            )
        return _CLOSED_IN_HANDSHAKE
    return None


_CLOSED_IN_HANDSHAKE = (
    "the endpoint closed the connection during the TLS handshake: it"
    " probably does not speak TLS (a plain http:// endpoint?)"
)
