"""How the agent decides that a service task is healthy."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, field_validator

from titus_flow.spec.base import Matches, SpecModel
from titus_flow.spec.container import Arg, PortName, split_command
from titus_flow.spec.quantities import Duration, format_duration


class _ProbeTiming(SpecModel):
    interval: Duration = Field(default=timedelta(seconds=10), description="Time between probes.")
    timeout: Duration = Field(default=timedelta(seconds=2), description="Time one probe may take.")
    healthy_threshold: StrictInt = Field(
        default=1, ge=1, le=100, description="Consecutive successes that make a task healthy."
    )
    unhealthy_threshold: StrictInt = Field(
        default=3, ge=1, le=100, description="Consecutive failures that make a task unhealthy."
    )
    start_grace_period: Duration = Field(
        default=timedelta(0), description="Failures in this time after start do not count."
    )

    @field_validator("interval", "timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be greater than 0s (got {format_duration(value)})")
        return value


class HttpCheck(_ProbeTiming):
    """Healthy when ``GET http://127.0.0.1:<port><path>`` answers 2xx."""

    kind: Literal["http"] = "http"
    path: Annotated[
        str, Matches(r"^/\S*$", "path", "start it with '/' and use no spaces, e.g. /healthz")
    ] = Field(default="/", description="URL path to GET.")
    port: PortName = Field(description="Name of a port in container.ports.")


class TcpCheck(_ProbeTiming):
    """Healthy when a TCP connection to ``127.0.0.1:<port>`` succeeds."""

    kind: Literal["tcp"] = "tcp"
    port: PortName = Field(description="Name of a port in container.ports.")


class ExecCheck(_ProbeTiming):
    """Healthy when ``command`` run inside the container exits 0."""

    kind: Literal["exec"] = "exec"
    command: list[Arg] = Field(min_length=1, description="Command run in the container.")

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_command(value)


HealthCheck = Annotated[HttpCheck | TcpCheck | ExecCheck, Field(discriminator="kind")]
"""A health check: ``http``, ``tcp`` or ``exec``, chosen by ``kind``."""
