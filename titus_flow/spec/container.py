"""What to run: the container image, its command and environment."""

from __future__ import annotations

import shlex
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, field_validator, model_validator

from titus_flow.spec.base import LabelKey, Matches, SpecModel, repeated
from titus_flow.spec.quantities import Mebibytes
from titus_flow.spec.volumes import Mount

# name[:tag] or name@sha256:<64 hex>, where name is an optional registry host[:port]
# followed by lowercase path components (the Docker reference grammar, simplified).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
IMAGE_PATTERN = (
    rf"^{_REGISTRY}{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})?$"
)
Image = Annotated[
    str,
    Matches(
        IMAGE_PATTERN,
        "image reference",
        "use name[:tag] or name@sha256:<64 hex digits>, with a lowercase name",
    ),
]
"""A Docker image reference, e.g. ``busybox:1.36`` or ``ghcr.io/org/app@sha256:...``."""

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PORT_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
PortName = Annotated[
    str,
    Matches(
        PORT_NAME_PATTERN,
        "port name",
        "use a lowercase letter, then up to 31 lowercase letters, digits or '_', e.g. http",
    ),
]
"""A named port, e.g. ``http``; the task sees its host port as ``PORT_HTTP``."""


def _no_nul(value: str) -> str:
    # execve() cannot pass a NUL byte: fail here rather than at launch on an agent.
    if "\0" in value:
        raise ValueError(f"{value!r} contains a NUL character, which a process cannot receive")
    return value


Arg = Annotated[str, AfterValidator(_no_nul)]
"""A command-line argument or environment value: any text but NUL."""

EnvName = Annotated[
    str,
    Matches(
        ENV_NAME_PATTERN,
        "environment variable name",
        "use letters, digits and '_', not starting with a digit",
    ),
]
"""An environment variable name, e.g. ``LOG_LEVEL``."""


NetworkMode = Literal["bridge", "host", "none"]
"""How a task's container is networked.

``bridge`` (the default): a network namespace of its own on the agent's task
network, named ports published on the agent's address; it cannot reach what
listens on the agent's loopback. ``host``: the agent's own network, only on
agents started with ``--allow-host-network``. ``none``: loopback only.
"""

# A reference to a secret the agent resolves at launch (never its value):
#   env_file:/abs/path[#KEY]   a KEY=VALUE file on the agent host (KEY: the variable's name)
#   arn:aws:secretsmanager:<region>:<account>:secret:<name>   its SecretString
#   arn:aws:ssm:<region>:<account>:parameter/<name>, or ssm:<name>   decrypted
SECRET_REF_PATTERN = (
    r"^(?:env_file:/[^#\0]*(?:#[A-Za-z_][A-Za-z0-9_]*)?"
    r"|arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+"
    r"|arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:parameter/[A-Za-z0-9/_.-]+"
    r"|ssm:/?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*)$"
)
SecretRef = Annotated[
    str,
    Matches(
        SECRET_REF_PATTERN,
        "secret reference",
        "use env_file:/path/on/agent[#KEY], an AWS Secrets Manager secret ARN"
        " (arn:aws:secretsmanager:...), or an SSM parameter (ssm:/name or its ARN)",
    ),
]
"""Where the agent finds a secret's value at launch; the job only ever holds this."""


def split_command(value: Any) -> Any:
    """Accept ``"echo hi"`` as shorthand for ``["echo", "hi"]`` (POSIX shell words)."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as err:
            raise ValueError(f"cannot split command {value!r}: {err}") from err
    return value


class Container(SpecModel):
    """The container a task runs.

    Example::

        Container(image="busybox:latest", command=["sh", "-c", "echo hello"])
    """

    image: Image = Field(description="Image reference: name[:tag] or name@sha256:<digest>.")
    entrypoint: list[Arg] | None = Field(
        default=None, description="Overrides the image's entrypoint."
    )
    command: list[Arg] | None = Field(
        default=None,
        description=(
            "Arguments (Docker CMD), run without a shell; a string is split into words"
            " as a shell would, but $VARS need ['sh', '-c', '...']."
        ),
    )
    env: dict[EnvName, Arg] = Field(default_factory=dict, description="Environment variables.")
    working_dir: str | None = Field(default=None, description="Absolute working directory.")
    user: str | None = Field(default=None, description="User (name, uid or uid:gid).")
    ports: list[PortName] = Field(
        default_factory=list,
        description="Named ports; each gets a host port, passed as PORT_<NAME> (PORT: first).",
    )
    labels: dict[LabelKey, str] = Field(default_factory=dict, description="Container labels.")
    network: NetworkMode = Field(
        default="bridge",
        description=(
            "bridge: an isolated network namespace, ports published on the agent's address;"
            " host: the agent's network (only agents started with --allow-host-network);"
            " none: no network but loopback."
        ),
    )
    read_only_root: StrictBool = Field(
        default=False,
        description="Mount the image's filesystem read-only; /tmp stays writable (tmpfs).",
    )
    secrets: dict[EnvName, SecretRef] = Field(
        default_factory=dict,
        description=(
            "Environment variables whose values the agent resolves at launch from a reference"
            " (env_file:/path[#KEY], a Secrets Manager ARN, ssm:/parameter); the value never"
            " enters the job's history."
        ),
    )
    mounts: list[Mount] = Field(
        default_factory=list,
        description="The job's volumes at paths in the container (volume, path, read_only).",
    )
    shm_size: Mebibytes | None = Field(
        default=None, ge=1, description='Size of /dev/shm, e.g. "128Mi"; default: the engine\'s.'
    )

    @field_validator("entrypoint", "command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_command(value)

    @field_validator("working_dir")
    @classmethod
    def _check_working_dir(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"working_dir {value!r} must be an absolute path, e.g. /app")
        return value

    @model_validator(mode="after")
    def _check_secrets(self) -> Container:
        if clash := sorted(set(self.secrets) & set(self.env)):
            raise ValueError(
                f"{', '.join(clash)} set in both env and secrets: keep each variable in one"
            )
        if self.network == "none" and self.ports:
            raise ValueError("network 'none' cannot publish ports: remove ports or use bridge")
        return self

    @field_validator("mounts")
    @classmethod
    def _check_mount_paths_unique(cls, value: list[Mount]) -> list[Mount]:
        if duplicates := repeated([mount.path for mount in value]):
            raise ValueError(f"mount path(s) {duplicates} used twice; mount one volume per path")
        return value

    @field_validator("ports")
    @classmethod
    def _check_ports_unique(cls, value: list[str]) -> list[str]:
        if duplicates := repeated(value):
            raise ValueError(f"duplicate port name(s) {duplicates}: list each port once")
        return value
