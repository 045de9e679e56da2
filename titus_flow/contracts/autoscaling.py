"""What a service job's autoscaling keeps, carries over and shows.

The decisions it records (:class:`AutoscalingDecision`), the state carried on
continue-as-new (:class:`AutoscalingCarry`: the metric buffer, the latest
decisions, a pause set at run time) and the ``autoscaling`` query's answer
(:class:`AutoscalingView`). All bounded: the buffer by its buckets, the
decisions by :data:`DECISIONS_KEPT`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from titus_flow.autoscaling.buffer import MetricBuffer
from titus_flow.autoscaling.models import Decision
from titus_flow.autoscaling.scheduled import schedule_id
from titus_flow.contracts.base import Message
from titus_flow.spec.autoscaling import Autoscaling, ScheduledAction, StepPolicy
from titus_flow.spec.jobs import Capacity
from titus_flow.views.base import View

DECISIONS_KEPT = 50
"""The latest decisions a job keeps (and shows); older ones are in the event journal."""


class AutoscalingDecision(View):
    """One evaluation of the policies (or one scheduled action), recorded.

    ``new_desired`` is None when desired stayed; ``policy`` names the winning
    policy, or ``scheduled:<action>`` for a scheduled action.
    """

    at: datetime
    old_desired: int
    new_desired: int | None = None
    policy: str | None = None
    metric_value: float | None = None
    reason: str = Field(max_length=2000)

    @classmethod
    def of(cls, decision: Decision) -> AutoscalingDecision:
        """The record of the engine's ``decision``."""
        return cls(
            at=decision.at,
            old_desired=decision.old_desired,
            new_desired=decision.new_desired,
            policy=decision.policy,
            metric_value=decision.metric_value,
            reason=decision.reason[:2000],
        )

    def engine(self) -> Decision:
        """The engine's form (the history its cooldowns read)."""
        return Decision(
            self.at,
            self.old_desired,
            self.new_desired,
            self.policy,
            self.metric_value,
            self.reason,
        )

    @property
    def changed(self) -> bool:
        """Whether this decision changed desired."""
        return self.new_desired is not None and self.new_desired != self.old_desired

    def text(self) -> str:
        """One line: ``desired 1 -> 3 by cpu: <reason>`` or ``desired 2 kept: <reason>``."""
        by = f" by {self.policy}" if self.policy else ""
        if self.changed:
            return f"desired {self.old_desired} -> {self.new_desired}{by}: {self.reason}"
        return f"desired {self.old_desired} kept: {self.reason}"


class AutoscalingCarry(Message):
    """A service job's autoscaling state, carried from one run to the next."""

    buffer: MetricBuffer | None = None
    decisions: list[AutoscalingDecision] = Field(default_factory=list, max_length=DECISIONS_KEPT)
    paused: bool | None = None  # set by autoscaling_control; None: the spec's ``paused``
    # The scheduled actions the job's Temporal Schedules run now (as last synced).
    schedules: list[ScheduledAction] = Field(default_factory=list)

    def record(self, decision: AutoscalingDecision) -> None:
        """Keep ``decision``: every change, and the latest evaluation that changed nothing.

        A decision that changes nothing replaces one just before it that changed
        nothing either, so evaluations every few seconds do not push the changes
        (which the cooldowns read) out of the :data:`DECISIONS_KEPT` kept; past
        that bound the oldest record goes, one that changed nothing first.
        """
        decisions = self.decisions
        if not decision.changed and decisions and not decisions[-1].changed:
            decisions.pop()
        decisions.append(decision)
        if len(decisions) > DECISIONS_KEPT:
            idle = next((i for i, d in enumerate(decisions) if not d.changed), 0)
            del decisions[idle]


class ScalingSchedules(Message):
    """Make the Temporal Schedules of a job's scheduled actions match ``actions``.

    One schedule per action (:func:`~titus_flow.autoscaling.scheduled.schedule_id`),
    created or updated; the schedules of the actions named in ``remove`` deleted.
    """

    job_id: str
    task_queue: str  # where the scheduled workflow runs: the control task queue
    actions: list[ScheduledAction] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class ScheduledScalingInput(Message):
    """What a scaling schedule starts: tell job ``job_id`` that ``action`` is due."""

    job_id: str
    action: ScheduledAction


class PolicyView(View):
    """One policy, as the view names it."""

    name: str
    kind: str
    metric: str
    summary: str  # e.g. "target 60" or "threshold 70, 2 step(s)"


class ScheduledActionView(View):
    """One scheduled action and the Temporal Schedule that runs it."""

    name: str
    cron: str
    min: int | None = None
    desired: int | None = None
    max: int | None = None
    schedule_id: str


class AutoscalingView(View):
    """The ``autoscaling`` query's answer: policies, metrics, decisions, schedules."""

    job_id: str
    enabled: bool  # the job has policies or scheduled actions
    paused: bool  # paused by the spec or by autoscaling_control
    held: str | None = None  # why no policy may act now (pause, update, canary), if so
    interval: timedelta | None = None
    window: timedelta | None = None
    min: int
    desired: int
    max: int
    policies: list[PolicyView] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)  # window averages, metrics with data
    # Metrics the job reads itself (CloudWatch, Prometheus) whose last read failed, and why.
    read_errors: dict[str, str] = Field(default_factory=dict)
    decisions: list[AutoscalingDecision] = Field(default_factory=list)  # oldest first
    scheduled: list[ScheduledActionView] = Field(default_factory=list)
    next_evaluation: datetime | None = None

    @classmethod
    def build(
        cls,
        *,
        job_id: str,
        autoscaling: Autoscaling | None,
        capacity: Capacity,
        paused: bool,
        held: str | None,
        metrics: dict[str, float],
        read_errors: dict[str, str],
        decisions: list[AutoscalingDecision],
        next_evaluation: datetime | None,
    ) -> AutoscalingView:
        """The view of a job whose spec has ``autoscaling`` (None: the job has none)."""
        policies = autoscaling.policies if autoscaling is not None else []
        actions = autoscaling.scheduled if autoscaling is not None else []
        return cls(
            job_id=job_id,
            enabled=bool(policies or actions),
            paused=paused,
            held=held,
            interval=autoscaling.interval if autoscaling is not None else None,
            window=autoscaling.window if autoscaling is not None else None,
            min=capacity.min,
            desired=capacity.desired,
            max=capacity.max,
            policies=[
                PolicyView(
                    name=policy.name,
                    kind=policy.kind,
                    metric=policy.metric,
                    summary=(
                        f"threshold {policy.threshold:g}, {len(policy.steps)} step(s)"
                        if isinstance(policy, StepPolicy)
                        else f"target {policy.target:g}"
                    ),
                )
                for policy in policies
            ],
            metrics=metrics,
            read_errors=dict(read_errors),
            decisions=list(decisions),
            scheduled=[
                ScheduledActionView(
                    name=action.name,
                    cron=action.cron,
                    min=action.min,
                    desired=action.desired,
                    max=action.max,
                    schedule_id=schedule_id(job_id, action.name),
                )
                for action in actions
            ],
            next_evaluation=next_evaluation,
        )
