"""How processes authenticate to Temporal: API key (inline or from a file) and mTLS files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, TLSConfig

from titus_flow import client as client_module
from titus_flow.auth import api_key, tls_config
from titus_flow.codec import EncryptionCodec, new_key_line
from titus_flow.config import load_settings
from titus_flow.errors import UserError


def _settings(tmp_path: Path, **env: str) -> Any:
    return load_settings(environ={"TITUS_FLOW_HOME": str(tmp_path), **env})


def test_api_key_inline_or_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("tok-123\n")
    assert api_key(_settings(tmp_path, TITUS_FLOW_API_KEY="inline")) == "inline"
    assert api_key(_settings(tmp_path, TITUS_FLOW_API_KEY_FILE=str(key_file))) == "tok-123"
    assert api_key(_settings(tmp_path)) is None
    with pytest.raises(UserError, match="keep one"):
        api_key(_settings(tmp_path, TITUS_FLOW_API_KEY="a", TITUS_FLOW_API_KEY_FILE=str(key_file)))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        api_key(_settings(tmp_path, TITUS_FLOW_API_KEY_FILE=str(tmp_path / "empty")))
    with pytest.raises(UserError, match="cannot read it"):
        api_key(_settings(tmp_path, TITUS_FLOW_API_KEY_FILE=str(tmp_path / "missing")))


def test_tls_from_files_flag_or_api_key(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_bytes(f"-- {name} --".encode())
    files = {
        "TITUS_FLOW_TLS_CERT": str(tmp_path / "cert.pem"),
        "TITUS_FLOW_TLS_KEY": str(tmp_path / "key.pem"),
        "TITUS_FLOW_TLS_CA": str(tmp_path / "ca.pem"),
    }
    mtls = tls_config(_settings(tmp_path, **files))
    assert mtls == TLSConfig(
        client_cert=b"-- cert.pem --",
        client_private_key=b"-- key.pem --",
        server_root_ca_cert=b"-- ca.pem --",
    )
    ca_only = tls_config(_settings(tmp_path, TITUS_FLOW_TLS_CA=files["TITUS_FLOW_TLS_CA"]))
    assert isinstance(ca_only, TLSConfig) and ca_only.client_cert is None
    assert tls_config(_settings(tmp_path, TITUS_FLOW_TLS="true")) is True
    assert tls_config(_settings(tmp_path), key="k") is True
    assert tls_config(_settings(tmp_path)) is False
    with pytest.raises(UserError, match="needs both"):
        tls_config(_settings(tmp_path, TITUS_FLOW_TLS_CERT=files["TITUS_FLOW_TLS_CERT"]))


async def test_connect_passes_api_key_tls_and_codec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    async def fake_connect(address: str, **kwargs: Any) -> str:
        seen.update(kwargs, address=address)
        return "client"

    monkeypatch.setattr(Client, "connect", fake_connect)
    (tmp_path / "key").write_text("tok")
    settings = _settings(
        tmp_path,
        TITUS_FLOW_API_KEY_FILE=str(tmp_path / "key"),
        TITUS_FLOW_CODEC_KEYS=new_key_line("k1"),
    )
    await client_module.connect(settings)
    assert seen["api_key"] == "tok" and seen["tls"] is True
    assert isinstance(seen["data_converter"].payload_codec, EncryptionCodec)
    assert seen["data_converter"].payload_codec.ring.current == "k1"
