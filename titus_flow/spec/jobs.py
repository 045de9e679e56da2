"""Batch and service jobs: the single source of truth of what titus-flow runs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from titus_flow.spec.base import LabelKey, Name, SpecModel
from titus_flow.spec.constraints import Constraints
from titus_flow.spec.container import Container
from titus_flow.spec.health import HealthCheck
from titus_flow.spec.quantities import Duration
from titus_flow.spec.resources import Resources
from titus_flow.spec.retry import Retry

MAX_BATCH_INSTANCES = 10_000

_PERCENT = re.compile(r"^(\d{1,3})%$")


class _JobCommon(SpecModel):
    name: Name = Field(description="Job name: lowercase letters, digits and '-'.")
    owner: str = Field(default="", max_length=256, description="Team or person (e.g. email).")
    container: Container
    resources: Resources = Field(default_factory=Resources)
    constraints: Constraints = Field(default_factory=Constraints)
    capacity_group: Name = Field(default="default", description="Capacity group to draw from.")
    labels: dict[LabelKey, str] = Field(default_factory=dict, description="Job labels.")


class BatchJob(_JobCommon):
    """``instances`` tasks that each run to completion, with retries and a runtime limit.

    Example::

        BatchJob(
            name="hello",
            container=Container(image="busybox:latest", command="echo hello"),
            instances=3,
            retry=Retry(attempts=2),
            runtime_limit="10m",
        )
    """

    kind: Literal["batch"] = "batch"
    instances: int = Field(default=1, ge=1, le=MAX_BATCH_INSTANCES, description="Tasks to run.")
    retry: Retry = Field(default_factory=Retry)
    runtime_limit: Duration | None = Field(
        default=None, description="Kill an attempt that runs longer than this."
    )
    depends_on: list[Name] = Field(
        default_factory=list, description="Jobs in the same file that must succeed first."
    )

    @field_validator("runtime_limit")
    @classmethod
    def _positive_limit(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("runtime_limit must be greater than 0s")
        return value


class Capacity(SpecModel):
    """How many tasks a service job keeps: ``min <= desired <= max``."""

    min: int = Field(default=0, ge=0, le=10_000)
    desired: int = Field(default=1, ge=0, le=10_000)
    max: int = Field(default=10, ge=0, le=10_000)

    @model_validator(mode="after")
    def _ordered(self) -> Capacity:
        if not self.min <= self.desired <= self.max:
            raise ValueError(
                f"need min <= desired <= max, got min={self.min}, desired={self.desired},"
                f" max={self.max}"
            )
        return self


class RollingUpdate(SpecModel):
    """Replace tasks batch by batch: up to ``max_surge`` extra, ``max_unavailable`` missing."""

    max_surge: int = Field(default=1, ge=0, le=10_000)
    max_unavailable: int = Field(default=0, ge=0, le=10_000)
    healthy_deadline: Duration = Field(
        default=timedelta(minutes=5),
        description="New tasks not healthy by then roll the update back.",
    )

    @model_validator(mode="after")
    def _progress_possible(self) -> RollingUpdate:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("max_surge and max_unavailable cannot both be 0: no update could start")
        return self


class DisruptionBudget(SpecModel):
    """At most ``max_unavailable`` tasks (a count, or a percentage like ``"25%"`` of
    desired) may be down at once for voluntary disruptions."""

    max_unavailable: int | str = Field(default=1)

    @field_validator("max_unavailable")
    @classmethod
    def _count_or_percent(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError("must be 0 or more")
            return value
        match = _PERCENT.match(value)
        if not match or int(match.group(1)) > 100:
            raise ValueError(f"invalid {value!r}: use a count like 1 or a percentage like '25%'")
        return value

    def allowed(self, desired: int) -> int:
        """How many tasks may be unavailable at once for ``desired`` tasks (at least 1
        when desired > 0, so a budget never blocks a job forever)."""
        if isinstance(self.max_unavailable, int):
            count = self.max_unavailable
        else:
            count = desired * int(self.max_unavailable[:-1]) // 100
        return max(count, 1 if desired else 0)


class ServiceJob(_JobCommon):
    """A fleet of long-running tasks kept at ``capacity.desired``, health-checked and
    replaced when they die.

    Example::

        ServiceJob(
            name="web",
            container=Container(image="busybox:latest", command="httpd -f -p $PORT",
                                ports=["http"]),
            capacity=Capacity(min=1, desired=3, max=5),
            health_check=HttpCheck(port="http", path="/"),
        )
    """

    kind: Literal["service"] = "service"
    capacity: Capacity = Field(default_factory=Capacity)
    health_check: HealthCheck | None = None
    update: RollingUpdate = Field(default_factory=RollingUpdate)
    disruption_budget: DisruptionBudget = Field(default_factory=DisruptionBudget)

    @model_validator(mode="after")
    def _check_port_exists(self) -> ServiceJob:
        port = getattr(self.health_check, "port", None)
        if port is not None and port not in self.container.ports:
            known = ", ".join(self.container.ports) or "none declared"
            raise ValueError(
                f"health_check.port {port!r} is not a port of the container"
                f" (container.ports: {known}); add it to container.ports"
            )
        return self


Job = Annotated[BatchJob | ServiceJob, Field(discriminator="kind")]
"""Any job; ``kind`` (``batch`` or ``service``) tells which."""

JOB_ADAPTER: TypeAdapter[BatchJob | ServiceJob] = TypeAdapter(Job)
