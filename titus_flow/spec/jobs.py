"""Batch and service jobs: the single source of truth of what titus-flow runs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StrictInt,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from titus_flow.spec.autoscaling import Autoscaling
from titus_flow.spec.base import LabelKey, Name, SpecModel, repeated
from titus_flow.spec.constraints import Constraints
from titus_flow.spec.container import Container
from titus_flow.spec.dependencies import Dependency, TaskOrder
from titus_flow.spec.health import ExecCheck, HealthCheck
from titus_flow.spec.load_balancers import LoadBalancerRef
from titus_flow.spec.quantities import Duration, format_duration
from titus_flow.spec.resources import Resources
from titus_flow.spec.retry import Retry
from titus_flow.spec.security import SecurityProfile
from titus_flow.spec.volumes import Volume, mount_errors

MAX_BATCH_INSTANCES = 10_000

_PERCENT = re.compile(r"^(\d{1,3})%$")
_MIN_CHECK_INTERVAL = timedelta(seconds=1)  # load_balancer_check_interval


class _JobCommon(SpecModel):
    name: Name = Field(description="Job name: lowercase letters, digits and '-'.")
    owner: str = Field(default="", max_length=256, description="Team or person (e.g. email).")
    container: Container
    resources: Resources = Field(default_factory=Resources)
    constraints: Constraints = Field(default_factory=Constraints)
    capacity_group: Name = Field(default="default", description="Capacity group to draw from.")
    labels: dict[LabelKey, str] = Field(default_factory=dict, description="Job labels.")
    volumes: list[Volume] = Field(
        default_factory=list, description="Named volumes the container's mounts refer to."
    )
    security: SecurityProfile = Field(
        default_factory=SecurityProfile, description="IAM role and security groups of the tasks."
    )

    @field_validator("volumes")
    @classmethod
    def _unique_volumes(cls, value: list[Volume]) -> list[Volume]:
        if duplicates := repeated([volume.name for volume in value]):
            raise ValueError(f"volume name(s) {duplicates} declared twice; name each volume once")
        return value

    # A model check: mounts (in container) and volumes are both known only here.
    @model_validator(mode="after")
    def _mounts_known(self) -> Any:
        if errors := mount_errors(list(self.volumes), list(self.container.mounts)):
            raise ValueError("; ".join(errors))
        return self


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
    instances: StrictInt = Field(
        default=1, ge=1, le=MAX_BATCH_INSTANCES, description="Tasks to run."
    )
    retry: Retry = Field(default_factory=Retry)
    runtime_limit: Duration | None = Field(
        default=None, description="Kill an attempt that runs longer than this."
    )
    depends_on: list[Dependency] = Field(
        default_factory=list,
        description=(
            "Jobs in the same file that must succeed first: a name, or"
            " {job: name, mode: n_to_n} for task i to wait for task i of that job."
        ),
    )
    task_order: TaskOrder = Field(
        default="parallel",
        description="sequential: task i starts only after task i-1 succeeded.",
    )

    @field_validator("runtime_limit")
    @classmethod
    def _positive_limit(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be greater than 0s; omit runtime_limit for no limit")
        return value

    # Whether the names exist (and form no cycle) is checked where the whole file
    # is known: titus_flow.loader. ``name`` is validated first and is in info.data.
    @field_validator("depends_on")
    @classmethod
    def _check_depends_on(cls, value: list[Dependency], info: ValidationInfo) -> list[Dependency]:
        names = [dependency.job for dependency in value]
        if info.data.get("name") in names:
            raise ValueError(f"job {info.data['name']!r} cannot depend on itself; remove it")
        if duplicates := repeated(names):
            raise ValueError(f"{duplicates} listed twice; list each job once")
        return value

    def dependency_names(self) -> list[str]:
        """The names of the jobs this one depends on, in ``depends_on`` order."""
        return [dependency.job for dependency in self.depends_on]


class Capacity(SpecModel):
    """How many tasks a service job keeps: ``min <= desired <= max``."""

    min: StrictInt = Field(default=0, ge=0, le=10_000, description="Fewest tasks.")
    desired: StrictInt = Field(default=1, ge=0, le=10_000, description="Tasks to keep running.")
    max: StrictInt = Field(default=10, ge=0, le=10_000, description="Most tasks.")

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

    max_surge: StrictInt = Field(
        default=1, ge=0, le=10_000, description="Extra tasks allowed during an update."
    )
    max_unavailable: StrictInt = Field(
        default=0, ge=0, le=10_000, description="Tasks that may be missing during an update."
    )
    healthy_deadline: Duration = Field(
        default=timedelta(minutes=5),
        description="New tasks not healthy by then roll the update back.",
    )

    @field_validator("healthy_deadline")
    @classmethod
    def _positive_deadline(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be greater than 0s (got {format_duration(value)})")
        return value

    @model_validator(mode="after")
    def _progress_possible(self) -> RollingUpdate:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError(
                "max_surge and max_unavailable cannot both be 0: no update could start;"
                " set one of them to at least 1"
            )
        return self


class DisruptionBudget(SpecModel):
    """How many tasks voluntary disruptions may take down at once.

    ``max_unavailable`` is a count, or a percentage of desired like ``"25%"``.
    Voluntary disruptions are task kills (without ``--force``), scale-downs,
    moves off draining agents and rolling updates. ``0`` (or ``"0%"``) allows
    none, like a Kubernetes PodDisruptionBudget of ``maxUnavailable: 0``: each
    one waits until a replacement is healthy (the job starts one first; updates
    surge at least one task).
    """

    max_unavailable: (
        Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=_PERCENT.pattern)]
    ) = Field(default=1, description='A count of tasks, or a percentage of desired like "25%".')

    # "before": checked ahead of the int | str union, which would otherwise accept a
    # bool as an int and report a bad value once per union member.
    @field_validator("max_unavailable", mode="before")
    @classmethod
    def _count_or_percent(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and (match := _PERCENT.fullmatch(value)) and int(match[1]) <= 100:
            return value
        raise ValueError(
            f"invalid max_unavailable {value!r}: use a count like 1 or a percentage like '25%'"
        )

    def allowed(self, desired: int) -> int:
        """How many tasks may be unavailable at once for ``desired`` tasks.

        A count as given; a percentage of ``desired`` rounded down, but at
        least 1 when desired > 0 (so ``"10%"`` of 3 tasks allows 1). A budget of
        0 or ``"0%"`` allows 0.
        """
        if isinstance(self.max_unavailable, int):
            return self.max_unavailable
        percent = int(self.max_unavailable[:-1])
        if percent == 0:
            return 0
        return max(desired * percent // 100, 1 if desired else 0)


class ServiceJob(_JobCommon):
    """A fleet of long-running tasks kept at ``capacity.desired``.

    Tasks are health-checked and replaced when they die.

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
    autoscaling: Autoscaling | None = Field(
        default=None, description="Scaling policies and scheduled actions (docs/services.md)."
    )
    load_balancers: list[LoadBalancerRef] = Field(
        default_factory=list,
        description=(
            "Target groups each task is registered in once Started and healthy (and"
            " deregistered, with the group's drain wait, before it stops): elbv2 target"
            " group ARNs, or local:<name> for the local proxy (titus-flow lb)."
        ),
    )
    load_balancer_check_interval: Duration = Field(
        default=timedelta(seconds=60),
        description=(
            "How often the job compares the targets of its AWS target groups with AWS and"
            " repairs drift (>= 1s); an update that changes it takes effect at once."
        ),
    )

    # A field validator (not a model one) so the error's path is health_check; the
    # container is validated first (fields validate in order) and is in info.data.
    @field_validator("health_check")
    @classmethod
    def _check_port_exists(cls, value: HealthCheck | None, info: ValidationInfo) -> Any:
        port = getattr(value, "port", None)
        container = info.data.get("container")
        if port is not None and container is not None and port not in container.ports:
            known = ", ".join(container.ports) or "none declared"
            raise ValueError(
                f"port {port!r} is not a port of the container"
                f" (container.ports: {known}); add it to container.ports"
            )
        return value

    # A field validator, so the error's path is autoscaling (the container is in info.data).
    @field_validator("autoscaling")
    @classmethod
    def _check_metric_ports(cls, value: Autoscaling | None, info: ValidationInfo) -> Any:
        container = info.data.get("container")
        if value is None or container is None:
            return value
        for index, policy in enumerate(value.policies):
            source = policy.metric_source
            if source is not None and source.prometheus.port not in container.ports:
                known = ", ".join(container.ports) or "none declared"
                raise ValueError(
                    f"policies[{index}].metric_source.prometheus.port:"
                    f" {source.prometheus.port!r} is not a port of the container"
                    f" (container.ports: {known}); add it to container.ports"
                )
        return value

    # After health_check (fields validate in order): the port registered is the
    # health check's when it names one, and needs container.ports either way.
    @field_validator("load_balancers")
    @classmethod
    def _check_load_balancers(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if duplicates := repeated(value):
            raise ValueError(f"{duplicates} listed twice; list each target group once")
        container = info.data.get("container")
        if value and container is not None and not container.ports:
            raise ValueError(
                "load balancers register a task's port, and container.ports is empty;"
                " add a port (e.g. ports: [http])"
            )
        return value

    @field_validator("load_balancer_check_interval")
    @classmethod
    def _check_interval_at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < _MIN_CHECK_INTERVAL:
            raise ValueError(f"must be at least 1s (got {format_duration(value)}); e.g. 30s")
        return value

    def target_port(self) -> str | None:
        """The named port registered in load balancers: the health check's, else the first.

        None when the container publishes no port (then ``load_balancers`` is empty).
        """
        check = self.health_check
        if check is not None and not isinstance(check, ExecCheck):
            return check.port
        return self.container.ports[0] if self.container.ports else None


Job = Annotated[BatchJob | ServiceJob, Field(discriminator="kind")]
"""Any job; ``kind`` (``batch`` or ``service``) tells which."""

JOB_ADAPTER: TypeAdapter[BatchJob | ServiceJob] = TypeAdapter(Job)


def job_file_json_schema() -> dict[str, Any]:
    """JSON Schema of a job file: one job, a list of jobs, or ``{jobs: [...]}``.

    Editors and CI can validate YAML and JSON job files with it before
    ``titus-flow validate`` does the full check.
    """
    job_schema = JOB_ADAPTER.json_schema(mode="validation", ref_template="#/$defs/{model}")
    defs: dict[str, Any] = job_schema.pop("$defs", {})
    # `kind` may be left out (the loader infers it), so a minimal job matches
    # both kinds: anyOf, not the oneOf pydantic emits for the tagged union.
    job_schema["anyOf"] = job_schema.pop("oneOf")
    job_schema.pop("discriminator", None)
    defs["Job"] = job_schema
    job_ref = {"$ref": "#/$defs/Job"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "titus-flow job file",
        "$defs": defs,
        "anyOf": [
            job_ref,
            {"type": "array", "items": job_ref, "minItems": 1},
            {
                "type": "object",
                "properties": {"jobs": {"type": "array", "items": job_ref, "minItems": 1}},
                "patternProperties": {"^x-": {}},
                "required": ["jobs"],
                "additionalProperties": False,
            },
        ],
    }
