"""How a titus-flow process authenticates to Temporal: mTLS files or an API key.

Every client, control worker and agent connects through
:func:`titus_flow.client.connect`, which takes its TLS configuration and API key
from here (via :mod:`titus_flow.connect_options`). titus-flow's own settings win; when
they say nothing, Temporal's profile (``temporal.toml``, ``TEMPORAL_API_KEY``,
``TEMPORAL_TLS*``) decides, with the Temporal CLI's rules. Files are read at
connect time, so a certificate or key that a fleet instance fetched at boot (or
that an operator rotated) is picked up by the next start of the process.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import TLSConfig

from titus_flow.config import Settings
from titus_flow.errors import UserError


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as err:
        raise UserError(f"{setting} {path}: cannot read it: {err.strerror}") from err


def api_key(settings: Settings) -> str | None:
    """The Temporal API key: ``api_key``, else the contents of ``api_key_file``.

    Else Temporal's (``TEMPORAL_API_KEY`` or the profile's ``api_key``).
    """
    if settings.api_key and settings.api_key_file:
        raise UserError("both api_key and api_key_file are set: keep one")
    if settings.api_key_file is None:
        return settings.api_key or settings.temporal_profile.api_key or None
    key = _read(settings.api_key_file, "api_key_file").decode().strip()
    if not key:
        raise UserError(f"api_key_file {settings.api_key_file}: the file is empty")
    return key


def tls_config(settings: Settings, key: str | None = None) -> TLSConfig | bool:
    """What to pass as ``tls`` to ``Client.connect``.

    A :class:`TLSConfig` when certificate files are set (mTLS with
    ``tls_cert_path`` and ``tls_key_path``; a private CA with ``tls_ca_path``),
    else ``True`` for TLS with the system's roots when ``tls`` is on or an API
    key is used (Temporal Cloud), else ``False``. When none of titus-flow's TLS
    settings is set, Temporal's profile decides as a whole (its ``tls`` table or
    ``TEMPORAL_TLS*`` variables; mixing certificates from both would surprise).
    """
    cert, private_key, ca = settings.tls_cert_path, settings.tls_key_path, settings.tls_ca_path
    if (cert is None) != (private_key is None):
        raise UserError(
            "mTLS needs both tls_cert_path and tls_key_path"
            " (TITUS_FLOW_TLS_CERT and TITUS_FLOW_TLS_KEY): one is missing"
        )
    temporal_tls = settings.temporal_profile.tls
    if settings.tls is None and cert is None and ca is None and temporal_tls is not None:
        try:
            return temporal_tls.to_connect_tls_config()
        except OSError as err:
            raise UserError(
                f"Temporal TLS setting {err.filename}: cannot read it: {err.strerror}"
            ) from err
    if cert is None and ca is None:
        return bool(settings.tls) or bool(key)
    return TLSConfig(
        client_cert=_read(cert, "tls_cert_path") if cert else None,
        client_private_key=_read(private_key, "tls_key_path") if private_key else None,
        server_root_ca_cert=_read(ca, "tls_ca_path") if ca else None,
    )
