"""Settings: where the state lives and how to reach Temporal.

Precedence, highest first: explicit overrides (CLI flags), ``TITUS_FLOW_*``
environment variables, the config file (``$TITUS_FLOW_CONFIG`` or
``$TITUS_FLOW_HOME/config.yaml``), then Temporal's own client configuration
exactly as the Temporal CLI resolves it (:mod:`temporalio.envconfig`: the
``temporal.toml`` profile chosen by ``TEMPORAL_CONFIG_FILE``/``TEMPORAL_PROFILE``,
overridden by ``TEMPORAL_ADDRESS``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*`` ...),
then defaults. The default points at the embedded dev server that ``titus-flow up``
starts. :mod:`titus_flow.connect_options` turns the result into ``Client.connect`` options.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from temporalio.envconfig import ClientConfigProfile

from titus_flow.cluster import CONTROL_TASK_QUEUE, PARTITION_SIZE
from titus_flow.errors import UserError
from titus_flow.telemetry import check_metrics_address

DEFAULT_ADDRESS = "127.0.0.1:7233"
S3_BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
"""What an S3 bucket name is (``log_bucket``, a fleet's ``agent.log_bucket``)."""
_BUCKET = re.compile(S3_BUCKET_PATTERN)


class Settings(BaseModel):
    """Resolved settings of one titus-flow process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(default_factory=lambda: Path.home() / ".titus-flow")
    address: str = DEFAULT_ADDRESS
    namespace: str = "default"
    api_key: str | None = None
    tls: bool | None = None
    """TLS on or off; unset: as Temporal's profile says, else on exactly when an API key is used."""
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
    partition_size: int = Field(default=PARTITION_SIZE, ge=10, le=5_000)
    """Batch jobs of more tasks than this run as partitions (child workflows) of at most
    this many tasks each, set at submit: smaller keeps each workflow history smaller."""
    server_wait_seconds: float = Field(default=300.0, ge=0)
    """How long a worker or agent starting up waits for a Temporal server that is not up
    (started with or before it, or restarting) before it exits 1."""

    # -- what agents allow tasks (docs/security.md) --
    allowed_images: list[str] = Field(default_factory=list)
    """Images agents run: empty allows any; else each entry is a registry (``host[:port]``,
    ``docker.io`` for bare names), a repository prefix ending in ``/`` or a full name,
    or a digest (``sha256:...``), and an image must match one."""
    allowed_host_paths: list[str] = Field(default_factory=list)
    """Host directories ``host_path`` volumes may lie under (symlinks resolved); empty
    allows none. The agent's ``--allow-host-path`` adds to them (docs/volumes.md)."""
    publish_address: str = "127.0.0.1"
    """Host address agents publish tasks' named ports on (bridge network)."""
    task_network: str = "titus-flow-tasks"
    """The Docker bridge network agents create for tasks (no inter-container traffic)."""
    task_pids_limit: int = Field(default=1024, ge=16)
    """Most processes and threads one task container may have (a fork bomb stops there)."""
    container_log_max_mib: int = Field(default=32, ge=2)
    """Output the engine keeps per container, and so the most an agent keeps per attempt."""
    log_retention_hours: float = Field(default=7 * 24.0, gt=0)
    """Agents delete the kept output of attempts that ended longer ago than this."""
    log_max_total_mib: int = Field(default=10 * 1024, ge=1)
    """Agents delete the oldest kept output of ended attempts beyond this total."""
    log_bucket: str | None = None
    """S3 bucket agents upload each ended attempt's log to (docs/logs.md); unset: no upload.
    ``task logs`` reads it there when the agent cannot give it."""
    log_prefix: str = "titus-flow"
    """Key prefix of the logs in ``log_bucket``: ``<prefix>/<job>/<task>/<attempt>/log.gz``."""
    secrets_dir: Path | None = None
    """The only directory ``env_file:`` secrets may be read from (default: ``<home>/secrets``)."""
    api_key_file: Path | None = None
    """File holding the Temporal API key (instead of ``api_key``; e.g. fetched at boot)."""
    codec_key_file: Path | None = None
    """Payload encryption keys, ``id:base64`` one a line, newest last (:mod:`titus_flow.codec`)."""
    codec_keys: SecretStr | None = None
    """The same keys inline, comma-separated (e.g. from ``TITUS_FLOW_CODEC_KEYS``)."""
    codec_port: int = Field(default=8234, ge=1, le=65535)
    """Port of the codec server ``titus-flow up`` runs for the Web UI (with a key ring)."""
    metrics_address: str | None = None
    """``HOST:PORT`` a worker, agent or codec server serves Prometheus ``/metrics`` on
    (:mod:`titus_flow.telemetry`); unset: no metrics endpoint."""

    _temporal: ClientConfigProfile = PrivateAttr(default_factory=ClientConfigProfile)

    @property
    def temporal_profile(self) -> ClientConfigProfile:
        """Temporal's own client configuration (``temporal.toml`` profile and ``TEMPORAL_*``).

        Its address and namespace are already folded into :attr:`address` and
        :attr:`namespace`; :mod:`titus_flow.auth` falls back on its API key and TLS,
        :mod:`titus_flow.connect_options` passes its gRPC metadata on.
        """
        return self._temporal

    @field_validator("allowed_images", "allowed_host_paths", mode="before")
    @classmethod
    def _list_from_text(cls, value: Any) -> Any:
        """Accept ``a,b`` as the environment variable gives it."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_bucket")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        """An S3 bucket name, or nothing (an empty value turns uploads off)."""
        return check_bucket(value) if value else None

    def with_task_logs(self, bucket: str | None, prefix: str | None) -> Settings:
        """These settings with ``log_bucket``/``log_prefix`` replaced where given (flags).

        Raises :class:`UserError` naming the flag for a bad bucket name.
        """
        update: dict[str, str] = {"log_prefix": prefix} if prefix else {}
        if bucket:
            try:
                update["log_bucket"] = check_bucket(bucket)
            except ValueError as err:
                raise UserError(f"--log-bucket: {err}") from None
        return self.model_copy(update=update)

    @field_validator("metrics_address")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        """``HOST:PORT``, checked where every other setting is."""
        if value is None:
            return None
        try:
            return check_metrics_address(value, "address")
        except UserError as err:
            raise ValueError(str(err)) from None

    @property
    def agent_secrets_dir(self) -> Path:
        """Where agents read ``env_file:`` secrets from."""
        return self.secrets_dir or self.home / "secrets"

    @field_validator("allowed_host_paths")
    @classmethod
    def _absolute_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} must be an absolute path, e.g. /srv/data")
        return value

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


def check_bucket(name: str) -> str:
    """``name`` if it is an S3 bucket name; ValueError saying what one is otherwise."""
    if not _BUCKET.fullmatch(name):
        raise ValueError(
            f"{name!r} is not an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-',"
            " starting and ending with a letter or digit (no s3:// and no /prefix: set"
            " log_prefix for that)"
        )
    return name


# Environment variable -> setting. Temporal's TEMPORAL_* variables are not here:
# temporalio.envconfig reads them (see _temporal_profile).
_ENV = [
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
    ("TITUS_FLOW_PARTITION_SIZE", "partition_size"),
    ("TITUS_FLOW_SERVER_WAIT_SECONDS", "server_wait_seconds"),
    ("TITUS_FLOW_ALLOWED_IMAGES", "allowed_images"),
    ("TITUS_FLOW_ALLOWED_HOST_PATHS", "allowed_host_paths"),
    ("TITUS_FLOW_PUBLISH_ADDRESS", "publish_address"),
    ("TITUS_FLOW_TASK_NETWORK", "task_network"),
    ("TITUS_FLOW_TASK_PIDS_LIMIT", "task_pids_limit"),
    ("TITUS_FLOW_CONTAINER_LOG_MAX_MIB", "container_log_max_mib"),
    ("TITUS_FLOW_LOG_RETENTION_HOURS", "log_retention_hours"),
    ("TITUS_FLOW_LOG_MAX_TOTAL_MIB", "log_max_total_mib"),
    ("TITUS_FLOW_LOG_BUCKET", "log_bucket"),
    ("TITUS_FLOW_LOG_PREFIX", "log_prefix"),
    ("TITUS_FLOW_SECRETS_DIR", "secrets_dir"),
    ("TITUS_FLOW_API_KEY_FILE", "api_key_file"),
    ("TITUS_FLOW_CODEC_KEY_FILE", "codec_key_file"),
    ("TITUS_FLOW_CODEC_KEYS", "codec_keys"),
    ("TITUS_FLOW_CODEC_PORT", "codec_port"),
    ("TITUS_FLOW_METRICS_ADDRESS", "metrics_address"),
]


def _config_file(env: dict[str, str]) -> Path:
    if "TITUS_FLOW_CONFIG" in env:
        return Path(env["TITUS_FLOW_CONFIG"]).expanduser()
    home = Path(env.get("TITUS_FLOW_HOME", Path.home() / ".titus-flow")).expanduser()
    return home / "config.yaml"


def _temporal_profile(env: dict[str, str]) -> ClientConfigProfile:
    """Temporal's client configuration, resolved by the SDK as the Temporal CLI does it.

    ``TEMPORAL_CONFIG_FILE`` (default ``~/.config/temporalio/temporal.toml``) and
    ``TEMPORAL_PROFILE`` (default ``default``) choose the profile; ``TEMPORAL_*``
    variables override its fields.
    """
    try:
        return ClientConfigProfile.load(override_env_vars=env)
    except RuntimeError as err:  # the SDK's ConfigError: bad TOML, unknown profile
        where = env.get("TEMPORAL_CONFIG_FILE", "temporal.toml")
        raise UserError(f"Temporal client config ({where}, TEMPORAL_* environment): {err}") from err


def load_settings(
    overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Resolve settings from overrides, environment and config file.

    Raises :class:`UserError` naming the setting when a value is invalid.
    """
    env = dict(os.environ if environ is None else environ)
    temporal = _temporal_profile(env)
    # Lowest layer: Temporal's address and namespace, so every use of Settings sees them.
    values: dict[str, Any] = {
        key: value
        for key, value in (("address", temporal.address), ("namespace", temporal.namespace))
        if value
    }
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
        settings = Settings(**values)
    except ValidationError as err:
        lines = [
            f"setting {'.'.join(map(str, e['loc']))}: {e['msg']} (from {path}, the"
            " TITUS_FLOW_* environment, a flag or Temporal's profile/TEMPORAL_* environment)"
            for e in err.errors()
        ]
        raise UserError(lines) from err
    settings._temporal = temporal
    return settings
