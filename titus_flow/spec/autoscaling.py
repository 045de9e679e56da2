"""Autoscaling of a service job: target tracking and step policies, scheduled actions.

The semantics follow AWS Application Auto Scaling (see ``docs/services.md``);
:mod:`titus_flow.autoscaling` evaluates the policies. This module only says what
a valid policy is.
"""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from titus_flow.spec.base import Matches, Name, SpecModel, repeated
from titus_flow.spec.container import PortName
from titus_flow.spec.quantities import Duration, format_duration

MAX_TASKS = 10_000
"""Bound of the capacities a scheduled action sets, like ``Capacity``."""

BUILTIN_METRICS = ("cpu_utilization", "requests_per_task")
CUSTOM_PREFIX = "custom:"
_CUSTOM_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,127}")
_KNOWN_METRICS = f"{', '.join(BUILTIN_METRICS)} or {CUSTOM_PREFIX}<name>"

_DEFAULT_COOLDOWN = timedelta(minutes=5)  # the AWS default for ECS services


def metric_name(value: str) -> str:
    """``value`` if it names a metric a policy can read; ValueError (with the rule) if not."""
    if value in BUILTIN_METRICS:
        return value
    if value.startswith(CUSTOM_PREFIX) and _CUSTOM_NAME.fullmatch(value[len(CUSTOM_PREFIX) :]):
        return value
    raise ValueError(
        f"unknown metric {value!r}: use {_KNOWN_METRICS} (a custom name is letters,"
        " digits, '-', '_' and '.', e.g. custom:queue_depth)"
    )


MetricName = Annotated[
    str, Field(max_length=160, description=_KNOWN_METRICS), AfterValidator(metric_name)
]
"""``cpu_utilization``, ``requests_per_task`` or ``custom:<name>``."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # a bool is an int to Python, never a metric value
        raise ValueError(f"expected a number, got {value!r}")
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]
"""A metric value: an int or a float, not a bool."""


_PROMETHEUS_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_PROMETHEUS_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class PrometheusSource(SpecModel):
    """Scrape ``metric`` from each task's Prometheus endpoint ``http://<agent>:<port><path>``.

    The task's value is the sum of the series of ``metric`` that carry every
    label of ``labels``; the job's value is the average over its tasks. A gauge
    is read as is; with ``rate: true`` the metric is a counter and the value is
    its increase per second since the previous scrape of the task (PromQL's
    ``rate()``: a task's first scrape gives none, a reset counts from 0). With
    ``quantile`` the metric is a histogram and the job's value is that quantile
    of the observations of all its tasks between two scrapes (PromQL's
    ``histogram_quantile(q, sum(rate(<metric>_bucket)))``). Examples::

        PrometheusSource(port="metrics", metric="queue_depth", labels={"queue": "high"})
        PrometheusSource(port="metrics", metric="http_requests_total", rate=True)
        PrometheusSource(port="metrics", metric="http_request_duration_seconds", quantile=0.99)
    """

    port: PortName = Field(description="Name of a port in container.ports.")
    path: Annotated[
        str, Matches(r"^/\S*$", "path", "start it with '/' and use no spaces, e.g. /metrics")
    ] = Field(default="/metrics", description="URL path of the text exposition.")
    metric: Annotated[
        str,
        Field(max_length=200),
        Matches(_PROMETHEUS_NAME, "Prometheus metric name", "e.g. queue_depth"),
    ] = Field(description="Name of the Prometheus metric (the series name).")
    labels: dict[str, Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict, max_length=10, description="Only series with these label values."
    )
    rate: StrictBool = Field(
        default=False,
        description="A counter: use its increase per second between scrapes, not its value.",
    )
    quantile: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        default=None,
        description=(
            "A histogram (the <metric>_bucket series): use this quantile of what the job's"
            " tasks observed between scrapes, e.g. 0.99."
        ),
    )

    @model_validator(mode="after")
    def _rate_or_quantile(self) -> Any:
        if self.rate and self.quantile is not None:
            raise ValueError(
                "quantile reads a histogram's buckets as rates already: remove rate: true"
            )
        return self

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        if bad := [name for name in value if not _PROMETHEUS_LABEL.fullmatch(name)]:
            raise ValueError(f"invalid label name(s) {bad}: letters, digits and '_', e.g. queue")
        return value


class MetricSource(SpecModel):
    """Where the job's workflow reads a ``custom:`` metric itself (instead of a pusher)."""

    prometheus: PrometheusSource


class _Policy(SpecModel):
    name: Name = Field(description="Policy name, recorded with every decision it makes.")
    metric: MetricName
    metric_source: MetricSource | None = Field(
        default=None,
        description="custom: metrics only: read the metric from each task (prometheus).",
    )

    @model_validator(mode="after")
    def _source_is_custom(self) -> Any:
        if self.metric_source is not None and not self.metric.startswith(CUSTOM_PREFIX):
            raise ValueError(
                f"metric_source reads a custom metric; {self.metric} has its own source:"
                " remove metric_source or use metric: custom:<name>"
            )
        return self


class TargetTrackingPolicy(_Policy):
    """Keep ``metric`` (an average per task) at ``target`` by changing desired.

    Example::

        TargetTrackingPolicy(name="cpu", metric="cpu_utilization", target=60)
    """

    kind: Literal["target_tracking"] = "target_tracking"
    target: Number = Field(description="Value to keep the metric at; greater than 0.")
    scale_out_cooldown: Duration = Field(
        default=_DEFAULT_COOLDOWN, description="After a scale-out, only a larger one."
    )
    scale_in_cooldown: Duration = Field(
        default=_DEFAULT_COOLDOWN, description="After a scale-in, no other scale-in."
    )
    disable_scale_in: StrictBool = Field(
        default=False, description="Only ever add tasks; other policies may remove them."
    )
    tolerance: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default=0.1,
        description=(
            "No change while the metric is within this fraction of the target"
            " (0.1: 90%..110%, as the Kubernetes HPA), so a steady load does not flap"
            " between two counts; 0 acts on any difference."
        ),
    )

    @field_validator("target")
    @classmethod
    def _positive_target(cls, value: float) -> float:
        if not 0 < value < float("inf"):
            raise ValueError(f"must be greater than 0 (got {value}); e.g. target: 60")
        return value


AdjustmentType = Literal["change_in_capacity", "percent_change_in_capacity", "exact_capacity"]


class StepAdjustment(SpecModel):
    """Change desired by ``adjustment`` when ``metric - threshold`` is in ``lower..upper``.

    A missing bound is open (minus or plus infinity). Like AWS, the lower bound
    is inclusive and the upper one exclusive above the threshold; below it, the
    other way round (so the threshold itself belongs to the step above it).
    """

    lower: Number | None = Field(default=None, description="Lower bound; none: -infinity.")
    upper: Number | None = Field(default=None, description="Upper bound; none: +infinity.")
    adjustment: StrictInt = Field(
        ge=-MAX_TASKS * 100,
        le=MAX_TASKS * 100,
        description="Tasks, percent of desired, or the exact desired (adjustment_type).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> StepAdjustment:
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(f"lower ({self.lower}) must be below upper ({self.upper}); swap them")
        return self


def step_errors(steps: list[StepAdjustment]) -> list[str]:
    """What is wrong with a list of steps: overlaps, gaps, several open ends.

    AWS rules: at most one step without a lower bound and one without an upper
    bound, and the intervals must neither overlap nor leave gaps.
    """
    errors = []
    if sum(step.lower is None for step in steps) > 1:
        errors.append("more than one step has no lower bound; give all but the lowest one")
    if sum(step.upper is None for step in steps) > 1:
        errors.append("more than one step has no upper bound; give all but the highest one")
    if errors:
        return errors
    ordered = sorted(steps, key=lambda s: -float("inf") if s.lower is None else s.lower)
    for below, above in pairwise(ordered):
        if below.upper is None or above.lower is None or below.upper > above.lower:
            errors.append(
                f"steps {_interval(below)} and {_interval(above)} overlap;"
                " make each lower bound the upper bound of the step below"
            )
        elif below.upper < above.lower:
            errors.append(
                f"gap between steps {_interval(below)} and {_interval(above)};"
                f" set lower: {below.upper} on the upper step"
            )
    return errors


def _interval(step: StepAdjustment) -> str:
    lower = "-inf" if step.lower is None else step.lower
    upper = "+inf" if step.upper is None else step.upper
    return f"[{lower}, {upper})"


class StepPolicy(_Policy):
    """Adjust desired by steps of how far ``metric`` is past ``threshold``.

    Example (add 1 task at 70-85 % CPU, 3 above 85 %)::

        StepPolicy(name="cpu-high", metric="cpu_utilization", threshold=70,
                   adjustment_type="change_in_capacity",
                   steps=[StepAdjustment(lower=0, upper=15, adjustment=1),
                          StepAdjustment(lower=15, adjustment=3)])
    """

    kind: Literal["step"] = "step"
    threshold: Number = Field(description="The alarm threshold the step bounds are relative to.")
    adjustment_type: AdjustmentType = Field(default="change_in_capacity")
    steps: list[StepAdjustment] = Field(min_length=1, max_length=20)
    min_adjustment_magnitude: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_TASKS,
        description="percent_change_in_capacity only: change at least this many tasks.",
    )
    cooldown: Duration = Field(
        default=_DEFAULT_COOLDOWN, description="Time after a scaling of this policy to wait."
    )

    @field_validator("steps")
    @classmethod
    def _steps_fit(cls, value: list[StepAdjustment]) -> list[StepAdjustment]:
        if errors := step_errors(list(value)):
            raise ValueError("; ".join(errors))
        return value

    @model_validator(mode="after")
    def _adjustments_fit_type(self) -> StepPolicy:
        if self.min_adjustment_magnitude is not None and (
            self.adjustment_type != "percent_change_in_capacity"
        ):
            raise ValueError(
                "min_adjustment_magnitude applies to adjustment_type"
                " percent_change_in_capacity only; remove it or change adjustment_type"
            )
        if self.adjustment_type == "exact_capacity" and any(
            not 0 <= step.adjustment <= MAX_TASKS for step in self.steps
        ):
            raise ValueError(
                f"with adjustment_type exact_capacity each adjustment is a desired count,"
                f" 0..{MAX_TASKS}; fix the negative or too large ones"
            )
        return self


Policy = Annotated[TargetTrackingPolicy | StepPolicy, Field(discriminator="kind")]
"""A scaling policy: ``target_tracking`` or ``step``, chosen by ``kind``."""


_CRON_FIELDS = (  # name, lowest, highest, names allowed
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_PART = re.compile(r"(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?")


def cron_errors(expression: str) -> list[str]:
    """What is wrong with a 5-field cron expression (``[]`` if it is valid).

    Fields: minute, hour, day of month, month, day of week; each a ``*``, a
    number, a range ``a-b``, a list ``a,b`` and an optional step ``/n``. Months
    and days of week may be names (``jan``, ``mon``). Temporal Schedules accept
    this form.
    """
    fields = expression.split()
    if len(fields) != len(_CRON_FIELDS):
        return [
            f"cron {expression!r} has {len(fields)} field(s), needs 5: minute hour"
            ' day-of-month month day-of-week, e.g. "0 8 * * mon-fri"'
        ]
    return [
        f"cron {expression!r}: {error}"
        for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True)
        if (error := _cron_field_error(text.lower(), what, low, high, names))
    ]


def _cron_field_error(
    text: str, what: str, low: int, high: int, names: tuple[str, ...]
) -> str | None:
    def value(token: str) -> int | None:
        if token in names:
            return names.index(token) + (low if what == "month" else 0)
        return int(token) if token.isdigit() and low <= int(token) <= high else None

    for part in text.split(","):
        match = _CRON_PART.fullmatch(part)
        if match is None or (match[2] is not None and int(match[2]) == 0):
            return f"{what} {text!r} is not a cron field; use *, n, a-b, a,b or */n"
        if match[1] == "*":
            continue
        bounds = [value(token) for token in match[1].split("-")]
        if None in bounds:
            spelled = f" or {names[0]}-{names[-1]}" if names else ""
            return f"{what} {text!r} is out of range; use {low}-{high}{spelled}"
        if len(bounds) == 2 and bounds[0] > bounds[1]:  # type: ignore[operator]
            return f"{what} range {match[1]!r} runs backwards; write the lower value first"
    return None


class ScheduledAction(SpecModel):
    """At times given by ``cron`` (UTC), set capacity min, desired and/or max.

    Example (8 tasks at least on weekday mornings)::

        ScheduledAction(name="morning", cron="0 8 * * mon-fri", min=8)
    """

    name: Name = Field(description="Action name, recorded with the change it makes.")
    cron: str = Field(max_length=200, description='5-field cron in UTC, e.g. "0 8 * * mon-fri".')
    min: StrictInt | None = Field(default=None, ge=0, le=MAX_TASKS)
    desired: StrictInt | None = Field(default=None, ge=0, le=MAX_TASKS)
    max: StrictInt | None = Field(default=None, ge=0, le=MAX_TASKS)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if errors := cron_errors(value):
            raise ValueError("; ".join(errors))
        return value

    @model_validator(mode="after")
    def _sets_something(self) -> ScheduledAction:
        if self.min is None and self.desired is None and self.max is None:
            raise ValueError("a scheduled action sets min, desired or max; give at least one")
        given = {"min": self.min, "desired": self.desired, "max": self.max}
        values = [value for value in given.values() if value is not None]
        if values != sorted(values):
            shown = ", ".join(f"{n}={v}" for n, v in given.items() if v is not None)
            raise ValueError(f"need min <= desired <= max, got {shown}")
        return self


_DEFAULT_INTERVAL = timedelta(seconds=15)
_DEFAULT_WINDOW = timedelta(seconds=60)
_MIN_INTERVAL = timedelta(seconds=1)


class Autoscaling(SpecModel):
    """How a service job's desired capacity follows its metrics and the clock.

    The job's workflow evaluates the policies every ``interval`` on the
    metric samples of the last ``window`` (see ``docs/services.md``).
    """

    policies: list[Policy] = Field(default_factory=list, max_length=20)
    scheduled: list[ScheduledAction] = Field(default_factory=list, max_length=50)
    paused: StrictBool = Field(default=False, description="Keep the policies but make no change.")
    interval: Duration = Field(
        default=_DEFAULT_INTERVAL, description="How often the policies are evaluated; >= 1s."
    )
    window: Duration = Field(
        default=_DEFAULT_WINDOW,
        description="Samples of this last period are averaged into a metric's value; >= interval.",
    )

    @property
    def metrics(self) -> list[str]:
        """The metrics the policies read, each once, in policy order."""
        return list(dict.fromkeys(policy.metric for policy in self.policies))

    @model_validator(mode="after")
    def _periods_fit(self) -> Autoscaling:
        if self.interval < _MIN_INTERVAL:
            got = format_duration(self.interval)
            raise ValueError(f"interval must be at least 1s (got {got}); e.g. 15s")
        if self.window < self.interval:
            raise ValueError(
                f"window ({format_duration(self.window)}) must be at least interval"
                f" ({format_duration(self.interval)}):"
                " each evaluation averages the samples of one window"
            )
        return self

    @property
    def metric_sources(self) -> dict[str, MetricSource]:
        """The metrics the job's workflow reads itself, and from where."""
        return {p.metric: p.metric_source for p in self.policies if p.metric_source is not None}

    @field_validator("policies")
    @classmethod
    def _unique_policies(cls, value: list[Any]) -> list[Any]:
        if duplicates := repeated([policy.name for policy in value]):
            raise ValueError(f"policy name(s) {duplicates} used twice; name each policy once")
        sources: dict[str, MetricSource | None] = {}
        for policy in value:
            if policy.metric_source is None:
                continue
            if sources.setdefault(policy.metric, policy.metric_source) != policy.metric_source:
                raise ValueError(
                    f"policies read {policy.metric} from different metric_source;"
                    " a metric has one source: give them the same one"
                )
        return value

    @field_validator("scheduled")
    @classmethod
    def _unique_actions(cls, value: list[ScheduledAction]) -> list[ScheduledAction]:
        if duplicates := repeated([action.name for action in value]):
            raise ValueError(f"scheduled action name(s) {duplicates} used twice; rename one")
        return value
