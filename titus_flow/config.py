"""Settings: where the state lives and how to reach Temporal.

Precedence, highest first: explicit overrides (CLI flags), ``TITUS_FLOW_*``
environment variables, Temporal's own ``TEMPORAL_*`` variables, the config
file (``$TITUS_FLOW_CONFIG`` or ``$TITUS_FLOW_HOME/config.yaml``), defaults.
The default points at the embedded dev server that ``titus-flow up`` starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from titus_flow.errors import UserError

DEFAULT_ADDRESS = "127.0.0.1:7233"
CONTROL_TASK_QUEUE = "titus-control"


class Settings(BaseModel):
    """Resolved settings of one titus-flow process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(default_factory=lambda: Path.home() / ".titus-flow")
    address: str = DEFAULT_ADDRESS
    namespace: str = "default"
    api_key: str | None = None
    tls: bool = False
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    tls_ca_path: Path | None = None
    ui_port: int = Field(default=8233, ge=1, le=65535)
    control_task_queue: str = CONTROL_TASK_QUEUE
    log_level: str = "WARNING"
    container_labels: dict[str, str] = Field(default_factory=dict)
    """Labels agents add to every container they start (e.g. cost allocation, cleanup)."""
    reconcile_seconds: float = Field(default=300.0, gt=0)
    """How often each agent removes containers whose attempt no job runs any more."""

    @field_validator("container_labels", mode="before")
    @classmethod
    def _labels_from_text(cls, value: Any) -> Any:
        """Accept ``key=value,key2=value2`` as the environment variable gives it."""
        if not isinstance(value, str):
            return value
        pairs = [item.strip() for item in value.split(",") if item.strip()]
        if any("=" not in pair for pair in pairs):
            raise ValueError("write labels as key=value,key2=value2")
        return dict(pair.split("=", 1) for pair in pairs)

    @property
    def is_embedded(self) -> bool:
        """Whether the address is on loopback, where ``titus-flow up`` may run the server.

        Any port counts, so tests and demos can use free ones.
        """
        host = self.address.rpartition(":")[0]
        return host in ("127.0.0.1", "localhost")

    @property
    def ui_url(self) -> str:
        """Address of the Web UI of the embedded server."""
        return f"http://127.0.0.1:{self.ui_port}"


# Environment variable -> setting; TITUS_FLOW_* wins over TEMPORAL_* (listed later).
_ENV = [
    ("TEMPORAL_ADDRESS", "address"),
    ("TEMPORAL_NAMESPACE", "namespace"),
    ("TEMPORAL_API_KEY", "api_key"),
    ("TEMPORAL_TLS", "tls"),
    ("TEMPORAL_TLS_CLIENT_CERT_PATH", "tls_cert_path"),
    ("TEMPORAL_TLS_CLIENT_KEY_PATH", "tls_key_path"),
    ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "tls_ca_path"),
    ("TITUS_FLOW_HOME", "home"),
    ("TITUS_FLOW_ADDRESS", "address"),
    ("TITUS_FLOW_NAMESPACE", "namespace"),
    ("TITUS_FLOW_API_KEY", "api_key"),
    ("TITUS_FLOW_TLS", "tls"),
    ("TITUS_FLOW_TLS_CERT", "tls_cert_path"),
    ("TITUS_FLOW_TLS_KEY", "tls_key_path"),
    ("TITUS_FLOW_TLS_CA", "tls_ca_path"),
    ("TITUS_FLOW_UI_PORT", "ui_port"),
    ("TITUS_FLOW_CONTROL_TASK_QUEUE", "control_task_queue"),
    ("TITUS_FLOW_LOG_LEVEL", "log_level"),
    ("TITUS_FLOW_CONTAINER_LABELS", "container_labels"),
    ("TITUS_FLOW_RECONCILE_SECONDS", "reconcile_seconds"),
]


def _config_file(env: dict[str, str]) -> Path:
    if "TITUS_FLOW_CONFIG" in env:
        return Path(env["TITUS_FLOW_CONFIG"]).expanduser()
    home = Path(env.get("TITUS_FLOW_HOME", Path.home() / ".titus-flow")).expanduser()
    return home / "config.yaml"


def load_settings(
    overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Resolve settings from overrides, environment and config file.

    Raises :class:`UserError` naming the setting when a value is invalid.
    """
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    path = _config_file(env)
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise UserError([f"{path}: not valid YAML: {err}"]) from err
        if not isinstance(loaded, dict):
            raise UserError([f"{path}: expected a mapping of settings"])
        values.update(loaded)
    for var, key in _ENV:
        if env.get(var):
            values[key] = env[var]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if "home" in values:
        values["home"] = Path(values["home"]).expanduser()
    try:
        return Settings(**values)
    except ValidationError as err:
        lines = [
            f"setting {'.'.join(map(str, e['loc']))}: {e['msg']} (from {path}, the"
            " TITUS_FLOW_*/TEMPORAL_* environment or a flag)"
            for e in err.errors()
        ]
        raise UserError(lines) from err
