"""Connection settings come from temporalio.envconfig: a ``temporal.toml`` profile and
``TEMPORAL_*`` variables are honoured as the Temporal CLI honours them, under
titus-flow's own settings (flags > TITUS_FLOW_* > config file > Temporal's > default).

Unit level: the ``Client.connect`` options are built, nothing connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import TLSConfig

from titus_flow.config import DEFAULT_ADDRESS, load_settings
from titus_flow.connect_options import ConnectOptions, connect_options
from titus_flow.errors import UserError

PROFILES = """
[profile.default]
address = "default-profile:7233"

[profile.prod]
address = "prod.example.com:7233"
namespace = "prod-ns"
api_key = "profile-key"

[profile.mtls]
address = "mtls.example.com:7233"
namespace = "mtls-ns"

[profile.mtls.tls]
server_name = "sni.example.com"
client_cert_path = "{dir}/client.pem"
client_key_path = "{dir}/client.key"
server_ca_cert_path = "{dir}/ca.pem"

[profile.meta]
address = "meta.example.com:7233"
grpc_meta = {{ team = "batch" }}
"""


@pytest.fixture
def temporal_toml(tmp_path: Path) -> Path:
    """A temporal.toml with several profiles, and the PEM files its mTLS profile names."""
    for name in ("client.pem", "client.key", "ca.pem"):
        (tmp_path / name).write_bytes(f"-- {name} --".encode())
    path = tmp_path / "temporal.toml"
    path.write_text(PROFILES.format(dir=tmp_path))
    return path


def _resolve(
    tmp_path: Path, env: dict[str, str], overrides: dict[str, Any] | None = None
) -> tuple[str, ConnectOptions]:
    """Address and connect options for exactly this environment (no user config leaks in)."""
    base = {
        "TITUS_FLOW_HOME": str(tmp_path / "home"),
        # An absent file: neither the user's temporal.toml nor config.yaml is read.
        "TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml"),
    }
    settings = load_settings(overrides, environ={**base, **env})
    return settings.address, connect_options(settings)


def test_nothing_configured_is_the_embedded_server(tmp_path: Path) -> None:
    address, options = _resolve(tmp_path, {})
    assert address == DEFAULT_ADDRESS
    assert options == ConnectOptions(namespace="default", api_key=None, tls=False, rpc_metadata={})


def test_the_default_profile_of_temporal_toml(tmp_path: Path, temporal_toml: Path) -> None:
    address, options = _resolve(tmp_path, {"TEMPORAL_CONFIG_FILE": str(temporal_toml)})
    assert address == "default-profile:7233"
    assert options["namespace"] == "default" and options["tls"] is False


def test_temporal_profile_selects_a_profile(tmp_path: Path, temporal_toml: Path) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(temporal_toml), "TEMPORAL_PROFILE": "prod"}
    address, options = _resolve(tmp_path, env)
    assert address == "prod.example.com:7233"
    # An API key turns TLS on with the system's roots, as the Temporal CLI does.
    assert options == ConnectOptions(
        namespace="prod-ns", api_key="profile-key", tls=True, rpc_metadata={}
    )


def test_a_profile_with_mtls_files_and_server_name(tmp_path: Path, temporal_toml: Path) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(temporal_toml), "TEMPORAL_PROFILE": "mtls"}
    address, options = _resolve(tmp_path, env)
    assert (address, options["namespace"], options["api_key"]) == (
        "mtls.example.com:7233",
        "mtls-ns",
        None,
    )
    assert options["tls"] == TLSConfig(
        domain="sni.example.com",
        server_root_ca_cert=b"-- ca.pem --",
        client_cert=b"-- client.pem --",
        client_private_key=b"-- client.key --",
    )


def test_grpc_metadata_of_a_profile_and_of_the_environment(
    tmp_path: Path, temporal_toml: Path
) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(temporal_toml), "TEMPORAL_PROFILE": "meta"}
    assert _resolve(tmp_path, env)[1]["rpc_metadata"] == {"team": "batch"}
    env["TEMPORAL_GRPC_META_REGION"] = "eu"
    assert _resolve(tmp_path, env)[1]["rpc_metadata"] == {"team": "batch", "region": "eu"}


@pytest.mark.parametrize(
    ("variables", "address", "namespace", "key", "tls"),
    [
        ({"TEMPORAL_ADDRESS": "env:7233"}, "env:7233", "prod-ns", "profile-key", True),
        ({"TEMPORAL_NAMESPACE": "env-ns"}, "prod.example.com:7233", "env-ns", "profile-key", True),
        ({"TEMPORAL_API_KEY": "env-key"}, "prod.example.com:7233", "prod-ns", "env-key", True),
        # TEMPORAL_TLS=false turns TLS off even with an API key, as in the Temporal CLI.
        ({"TEMPORAL_TLS": "false"}, "prod.example.com:7233", "prod-ns", "profile-key", False),
    ],
)
def test_temporal_variables_override_the_profile(
    tmp_path: Path,
    temporal_toml: Path,
    variables: dict[str, str],
    address: str,
    namespace: str,
    key: str,
    tls: bool,
) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(temporal_toml), "TEMPORAL_PROFILE": "prod", **variables}
    got_address, options = _resolve(tmp_path, env)
    assert (got_address, options["namespace"], options["api_key"]) == (address, namespace, key)
    assert options["tls"] == tls


def test_temporal_tls_variables_alone(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_bytes(name.encode())
    assert _resolve(tmp_path, {"TEMPORAL_TLS": "true"})[1]["tls"] == TLSConfig()
    assert _resolve(tmp_path, {"TEMPORAL_TLS": "false"})[1]["tls"] is False
    files = {
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "c.pem"),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "k.pem"),
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(tmp_path / "ca.pem"),
        "TEMPORAL_TLS_SERVER_NAME": "sni",
    }
    assert _resolve(tmp_path, files)[1]["tls"] == TLSConfig(
        domain="sni",
        server_root_ca_cert=b"ca.pem",
        client_cert=b"c.pem",
        client_private_key=b"k.pem",
    )
    inline = {"TEMPORAL_TLS_CLIENT_CERT_DATA": "CERT", "TEMPORAL_TLS_CLIENT_KEY_DATA": "KEY"}
    assert _resolve(tmp_path, inline)[1]["tls"] == TLSConfig(
        client_cert=b"CERT", client_private_key=b"KEY"
    )


# Each row adds one layer above the previous ones; the top one gives the address.
LAYERS = [
    ("default", {}, None, None, DEFAULT_ADDRESS),
    ("temporal.toml", {"profile": True}, None, None, "prod.example.com:7233"),
    ("TEMPORAL_ADDRESS", {"profile": True, "TEMPORAL_ADDRESS": "t-env:1"}, None, None, "t-env:1"),
    ("config file", {"profile": True, "TEMPORAL_ADDRESS": "t-env:1"}, "file:1", None, "file:1"),
    (
        "TITUS_FLOW_ADDRESS",
        {"profile": True, "TEMPORAL_ADDRESS": "t-env:1", "TITUS_FLOW_ADDRESS": "tf-env:1"},
        "file:1",
        None,
        "tf-env:1",
    ),
    (
        "flag",
        {"profile": True, "TEMPORAL_ADDRESS": "t-env:1", "TITUS_FLOW_ADDRESS": "tf-env:1"},
        "file:1",
        "flag:1",
        "flag:1",
    ),
]


@pytest.mark.parametrize(("top", "env", "in_file", "flag", "address"), LAYERS)
def test_precedence_of_the_address(
    tmp_path: Path,
    temporal_toml: Path,
    top: str,
    env: dict[str, Any],
    in_file: str | None,
    flag: str | None,
    address: str,
) -> None:
    variables = {k: v for k, v in env.items() if k != "profile"}
    if env.get("profile"):
        variables.update(TEMPORAL_CONFIG_FILE=str(temporal_toml), TEMPORAL_PROFILE="prod")
    if in_file is not None:
        config = tmp_path / "config.yaml"
        config.write_text(f"address: {in_file}\n")
        variables["TITUS_FLOW_CONFIG"] = str(config)
    got, _ = _resolve(tmp_path, variables, {"address": flag})
    assert got == address, top


def test_titus_flow_credentials_win_over_temporal_ones(tmp_path: Path, temporal_toml: Path) -> None:
    (tmp_path / "own.pem").write_bytes(b"own ca")
    (tmp_path / "key").write_text("file-key\n")
    env = {"TEMPORAL_CONFIG_FILE": str(temporal_toml), "TEMPORAL_PROFILE": "mtls"}
    # titus-flow's TLS settings replace Temporal's TLS as a whole (no mixed certificates).
    own_ca = _resolve(tmp_path, {**env, "TITUS_FLOW_TLS_CA": str(tmp_path / "own.pem")})[1]
    assert own_ca["tls"] == TLSConfig(server_root_ca_cert=b"own ca")
    assert _resolve(tmp_path, {**env, "TITUS_FLOW_TLS": "false"})[1]["tls"] is False
    prod = {"TEMPORAL_CONFIG_FILE": str(temporal_toml), "TEMPORAL_PROFILE": "prod"}
    own_key = _resolve(tmp_path, {**prod, "TITUS_FLOW_API_KEY_FILE": str(tmp_path / "key")})[1]
    assert own_key["api_key"] == "file-key" and own_key["tls"] is True


def test_unknown_profile_or_bad_toml_is_a_user_error(tmp_path: Path, temporal_toml: Path) -> None:
    with pytest.raises(UserError, match="Profile 'nope' not found"):
        _resolve(tmp_path, {"TEMPORAL_CONFIG_FILE": str(temporal_toml), "TEMPORAL_PROFILE": "nope"})
    bad = tmp_path / "bad.toml"
    bad.write_text("[[[")
    with pytest.raises(UserError, match=r"bad\.toml"):
        _resolve(tmp_path, {"TEMPORAL_CONFIG_FILE": str(bad)})


def test_an_unreadable_temporal_certificate_is_a_user_error(tmp_path: Path) -> None:
    env = {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "missing.pem")}
    with pytest.raises(UserError, match=r"missing\.pem: cannot read it"):
        _resolve(tmp_path, env)
