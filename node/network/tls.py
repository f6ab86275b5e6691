"""DICOM TLS (PS3.15 B.9, "BCP 195 TLS Secure Transport Connection Profile") for the node.

The listener accepts TLS associations when ``[tls] listener = true`` and, with
``require_client_certificate``, only from peers whose certificate the configured CA bundle
signed (the scanners').  A destination with ``tls = true`` is reached over TLS; its server
certificate is verified against the CA bundle (or the system's) and its host name, and the
node presents its own certificate when the peer asks for one.  TLS 1.2 is the minimum, as
BCP 195 requires.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["TlsError", "TlsSettings", "client_context", "parse_tls", "server_context"]


class TlsError(ValueError):
    """The TLS configuration is incomplete or its files cannot be used."""


@dataclass(frozen=True)
class TlsSettings:
    """The node's TLS material and where TLS is used.

    Attributes
    ----------
    certificate, private_key
        PEM certificate chain and key of the node: the listener's server certificate and the
        client certificate the senders present.
    ca_certificates
        PEM bundle of the CAs trusted to sign peers' certificates; ``None``: the system's
        (for destinations; the listener then cannot require client certificates).
    listener
        Whether the DICOM listener speaks TLS.
    require_client_certificate
        Whether the listener refuses peers without a certificate the CA bundle signed.
    """

    certificate: Path | None = None
    private_key: Path | None = None
    ca_certificates: Path | None = None
    listener: bool = False
    require_client_certificate: bool = False


def parse_tls(raw: Mapping[str, Any], path: Callable[[str], Path]) -> TlsSettings:
    """Validated TLS settings from the ``[tls]`` table.

    Parameters
    ----------
    raw
        The table (empty: TLS off).
    path
        Resolves a configured path (relative to the configuration file).

    Raises
    ------
    TlsError
        When the listener is to use TLS without certificate and key, client certificates are
        required without a CA bundle, or a named file does not exist.
    """

    def file(key: str) -> Path | None:
        value = str(raw.get(key, "") or "")
        if not value:
            return None
        resolved = path(value)
        if not resolved.is_file():
            raise TlsError(f"tls.{key}: {resolved} is not a file")
        return resolved

    settings = TlsSettings(
        certificate=file("certificate"),
        private_key=file("private_key"),
        ca_certificates=file("ca_certificates"),
        listener=bool(raw.get("listener", False)),
        require_client_certificate=bool(raw.get("require_client_certificate", False)),
    )
    if (settings.certificate is None) != (settings.private_key is None):
        raise TlsError("tls.certificate and tls.private_key go together")
    if settings.listener and settings.certificate is None:
        raise TlsError("tls.listener = true needs tls.certificate and tls.private_key")
    if settings.require_client_certificate and settings.ca_certificates is None:
        raise TlsError("tls.require_client_certificate = true needs tls.ca_certificates")
    return settings


def _base(context: ssl.SSLContext, tls: TlsSettings) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if tls.certificate is not None and tls.private_key is not None:
            context.load_cert_chain(str(tls.certificate), str(tls.private_key))
        if tls.ca_certificates is not None:
            context.load_verify_locations(cafile=str(tls.ca_certificates))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load the TLS certificates: {exc}") from exc
    return context


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """The listener's TLS context."""
    context = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), tls)
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_NONE
    return context


def client_context(tls: TlsSettings) -> ssl.SSLContext:
    """The senders' TLS context: verifies the server (certificate and host name)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca_certificates is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return _base(context, tls)
