"""What to run: the container image, its command and environment."""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator

from titus_flow.spec.base import LabelKey, SpecModel

# name[:tag] or name@sha256:<64 hex>, where name is an optional registry host[:port]
# followed by lowercase path components (the Docker reference grammar, simplified).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"
IMAGE_PATTERN = (
    rf"^{_REGISTRY}{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})?$"
)
_IMAGE = re.compile(IMAGE_PATTERN)

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
PORT_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
PortName = Annotated[str, StringConstraints(pattern=PORT_NAME_PATTERN)]
"""A named port, e.g. ``http``; the task sees its host port as ``PORT_HTTP``."""

EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)]


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

    image: str = Field(
        description="Image reference: name[:tag] or name@sha256:<digest>.",
        json_schema_extra={"pattern": IMAGE_PATTERN},
    )
    entrypoint: list[str] | None = Field(
        default=None, description="Overrides the image's entrypoint."
    )
    command: list[str] | None = Field(
        default=None, description="Arguments (Docker CMD); a string is split like a shell."
    )
    env: dict[EnvName, str] = Field(default_factory=dict, description="Environment variables.")
    working_dir: str | None = Field(default=None, description="Absolute working directory.")
    user: str | None = Field(default=None, description="User (name, uid or uid:gid).")
    ports: list[PortName] = Field(
        default_factory=list,
        description="Named ports; each gets a host port, passed as PORT_<NAME> (PORT: first).",
    )
    labels: dict[LabelKey, str] = Field(default_factory=dict, description="Container labels.")

    @field_validator("image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        if not _IMAGE.match(value):
            raise ValueError(
                f"invalid image reference {value!r}: use name[:tag] or name@sha256:<64 hex digits>,"
                " with a lowercase name"
            )
        return value

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

    @field_validator("ports")
    @classmethod
    def _check_ports_unique(cls, value: list[str]) -> list[str]:
        duplicates = sorted({p for p in value if value.count(p) > 1})
        if duplicates:
            raise ValueError(f"duplicate port name(s): {', '.join(duplicates)}")
        return value

    @field_validator("labels")
    @classmethod
    def _check_reserved_labels(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(k for k in value if k.startswith("titus-flow."))
        if reserved:
            raise ValueError(
                f"label(s) {', '.join(reserved)} use the reserved prefix 'titus-flow.'; rename them"
            )
        return value
