"""A service job's autoscaling: the metrics it receives and the decisions its policies make.

:class:`ServiceAutoscaling` sits between
:class:`~titus_flow.workflows.service_metrics.ServiceMetricSources` and
:class:`~titus_flow.workflows.service.ServiceJobWorkflow`:

- the ``metrics`` signal keeps the samples of metrics a policy reads in a
  bounded :class:`~titus_flow.autoscaling.buffer.MetricBuffer`, as do the
  reads of CloudWatch and Prometheus sources before each evaluation;
- while the job has policies, a timer fires every ``autoscaling.interval``
  (:data:`AUTOSCALING_PATCH`) and the pure engine
  (:func:`~titus_flow.autoscaling.decide`) decides; a new desired count takes
  the path of a ``scale`` request, so the plan removes surplus tasks within the
  disruption budget;
- the ``scheduled_action`` signal (sent by the job's Temporal Schedules, see
  :mod:`~titus_flow.workflows.scheduled_scaling`) sets min/desired/max;
- every decision is recorded: the latest ones in the state (carried over
  continue-as-new), each change in the event journal, and each evaluation in
  the workflow history as the summary of the next evaluation's timer;
- ``autoscaling_control`` pauses and resumes; the ``autoscaling`` query shows it all.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from titus_flow.activities.interfaces import ScalingScheduleActivityInterface
    from titus_flow.autoscaling import CapacityNow, Situation, decide
    from titus_flow.autoscaling.buffer import MetricBuffer
    from titus_flow.autoscaling.engine import pause_reason, without_tolerance
    from titus_flow.autoscaling.scheduled import (
        SCHEDULED_PREFIX,
        describe_action,
        scheduled_capacity,
    )
    from titus_flow.contracts import ServiceJobInput
    from titus_flow.contracts.autoscaling import (
        AutoscalingCarry,
        AutoscalingDecision,
        AutoscalingView,
        ScalingSchedules,
    )
    from titus_flow.contracts.metric_reports import MetricReport
    from titus_flow.lifecycle import RolloutPhase
    from titus_flow.service_plan import requests as rules
    from titus_flow.spec import Autoscaling, Capacity, ScheduledAction, TargetTrackingPolicy
    from titus_flow.workflows.service_metrics import ServiceMetricSources

# ``workflow.patched`` id of "a service job with autoscaling policies evaluates
# them on a timer every ``autoscaling.interval``": the previous release
# accepted the policies and left desired alone.
AUTOSCALING_PATCH = "service-autoscaling"
# ``workflow.patched`` id of "a service job keeps a Temporal Schedule per
# scheduled action, and deletes them when it is killed".
SCALING_SCHEDULES_PATCH = "service-scaling-schedules"
SCHEDULES_TIMEOUT = timedelta(seconds=30)
# ``workflow.patched`` id of "target tracking holds within the policy's
# tolerance" (before: any difference from the target changed desired). Asked
# only of jobs with a target-tracking policy whose tolerance is not 0.
TARGET_TOLERANCE_PATCH = "autoscaling-target-tolerance"
# A sync that still fails after these is journaled and left (the kill must not hang on it).
SCHEDULES_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=10)


class ServiceAutoscaling(ServiceMetricSources):
    """The autoscaling state of a service job, its evaluation loop and its handlers."""

    _scaling: AutoscalingCarry
    _next_evaluation: datetime | None
    _autoscaler: asyncio.Task[None] | None
    _schedule_keeper: asyncio.Task[None] | None

    def _init_autoscaling(self, request: ServiceJobInput) -> None:
        """Take over the autoscaling state the previous run carried (none for a new job)."""
        self._scaling = request.autoscaling or AutoscalingCarry()
        request.autoscaling = None  # the next carry is made from the current state
        self._next_evaluation = None
        self._autoscaler = None
        self._schedule_keeper = None
        self._init_metric_sources()

    @property
    def _autoscaling(self) -> Autoscaling | None:
        """The current revision's autoscaling, if it has any."""
        return self._spec.autoscaling

    @property
    def _autoscaling_paused(self) -> bool:
        """Paused by ``autoscaling_control``, else as the spec says."""
        if self._scaling.paused is not None:
            return self._scaling.paused
        return self._autoscaling is not None and self._autoscaling.paused

    # --- the evaluation loop ----------------------------------------------------

    def _start_autoscaler(self) -> None:
        """Start the evaluation loop and the schedules' keeper (run() calls this once).

        A replay of a release without them starts neither.
        """
        if workflow.patched(AUTOSCALING_PATCH):
            self._autoscaler = asyncio.create_task(self._autoscale())
        if workflow.patched(SCALING_SCHEDULES_PATCH):
            self._schedule_keeper = asyncio.create_task(self._keep_schedules())

    async def _stop_autoscaler(self) -> None:
        """Stop the evaluation loop and delete the job's schedules (the job is being killed)."""
        self._next_evaluation = None
        if self._autoscaler is not None:
            self._autoscaler.cancel()
        if self._schedule_keeper is None:
            return
        self._schedule_keeper.cancel()
        # The current revision's too: a sync cut short may have made some of them.
        made = {action.name for action in [*self._scaling.schedules, *self._wanted_schedules()]}
        if made:
            await self._sync_schedules([], remove=sorted(made))

    async def _autoscale(self) -> None:
        """Every ``interval`` while the job has policies: decide, and apply a new desired."""
        while not self._killed:
            await workflow.wait_condition(lambda: self._killed or self._policies_now() is not None)
            autoscaling = self._policies_now()
            if autoscaling is None:
                return  # killed
            self._next_evaluation = workflow.now() + autoscaling.interval
            await workflow.sleep(autoscaling.interval, summary=self._timer_summary())
            autoscaling = self._policies_now()
            if autoscaling is None or self._killed:
                continue
            # CloudWatch and Prometheus sources (none: no await, as before).
            reports = await self._read_metric_sources(autoscaling)
            autoscaling = self._policies_now()
            if autoscaling is not None and not self._killed:
                for report in reports:
                    self._add_report(autoscaling, report)
                self._evaluate(autoscaling)

    # --- the schedules of scheduled actions ---------------------------------------

    def _wanted_schedules(self) -> list[ScheduledAction]:
        """The scheduled actions of the current revision."""
        autoscaling = self._autoscaling
        return list(autoscaling.scheduled) if autoscaling is not None else []

    async def _keep_schedules(self) -> None:
        """Keep one Temporal Schedule per scheduled action, as the current revision has them."""
        while not self._killed:
            await workflow.wait_condition(
                lambda: self._killed or self._wanted_schedules() != self._scaling.schedules
            )
            if self._killed:
                return
            wanted = self._wanted_schedules()
            names = {action.name for action in wanted}
            gone = [a.name for a in self._scaling.schedules if a.name not in names]
            await self._sync_schedules(wanted, gone)

    async def _sync_schedules(self, wanted: list[ScheduledAction], remove: list[str]) -> None:
        """Create or update the schedules of ``wanted``, delete those of ``remove``.

        A failure the activity gives up on is journaled and not retried until
        the actions change again (a spec Temporal refuses stays refused).
        """
        request = ScalingSchedules(
            job_id=self._job_id,
            task_queue=workflow.info().task_queue,
            actions=wanted,
            remove=remove,
        )
        try:
            await workflow.execute_activity_method(
                ScalingScheduleActivityInterface.sync_scaling_schedules,
                request,
                start_to_close_timeout=SCHEDULES_TIMEOUT,
                retry_policy=SCHEDULES_RETRY,
                summary=f"scaling schedules: {len(wanted)} set, {len(remove)} deleted",
            )
        except ActivityError as err:
            self.journal.scaling(f"autoscaling: scaling schedules not synced: {err.cause or err}")
        self._scaling.schedules = wanted

    def _policies_now(self) -> Autoscaling | None:
        """The autoscaling to evaluate: the current revision's, if it has policies."""
        autoscaling = self._autoscaling
        return autoscaling if autoscaling is not None and autoscaling.policies else None

    def _timer_summary(self) -> str:
        """What the history shows for the next evaluation: the previous decision."""
        last = self._scaling.decisions[-1] if self._scaling.decisions else None
        text = "autoscaling: evaluate the policies"
        return f"{text}; last: {last.text()}"[:400] if last else text

    def _situation(self, autoscaling: Autoscaling) -> Situation:
        """What the engine reads now: policies, capacity, metrics, history, pauses.

        Reads only (the ``autoscaling`` query uses it too).
        """
        capacity = self._capacity
        buffer = self._scaling.buffer
        assert self._input is not None
        return Situation(
            policies=autoscaling.policies,
            capacity=CapacityNow(capacity.min, capacity.desired, capacity.max),
            now=workflow.now(),
            metrics=buffer.samples() if buffer is not None else {},
            history=[decision.engine() for decision in self._scaling.decisions],
            paused=self._autoscaling_paused,
            update_in_progress=self._input.rollout is RolloutPhase.ROLLING,
            canary_in_progress=self._input.rollout is RolloutPhase.CANARY,
            window=autoscaling.window,
        )

    def _evaluate(self, autoscaling: Autoscaling) -> None:
        """One evaluation: the engine's decision, recorded and applied."""
        self._metric_buffer(autoscaling).prune(workflow.now())
        situation = self._situation(autoscaling)
        tolerant = any(
            isinstance(policy, TargetTrackingPolicy) and policy.tolerance
            for policy in autoscaling.policies
        )
        if tolerant and not workflow.patched(TARGET_TOLERANCE_PATCH):
            situation = dataclasses.replace(
                situation, policies=without_tolerance(situation.policies)
            )
        record = AutoscalingDecision.of(decide(situation))
        capacity = None
        if record.changed:
            assert record.new_desired is not None
            capacity = self._scaled_to(record.new_desired, None, None)
        self._decided(record, capacity)

    def _scaled_to(self, desired: int | None, low: int | None, high: int | None) -> Capacity | None:
        """The capacity a scale request would set; None if it would be refused (never expected)."""
        try:
            return rules.scaled(self._capacity, desired, low, high)
        except rules.Rejected:
            return None

    def _decided(self, record: AutoscalingDecision, capacity: Capacity | None) -> None:
        """Record ``record``; apply ``capacity`` (if any) as a scale request does."""
        assert self._input is not None
        self._scaling.record(record)
        if capacity is None or capacity == self._capacity:
            return
        self._input.capacity = capacity
        self.journal.scaling(
            f"autoscaling: {record.text()}"
            f" (min {capacity.min}, desired {capacity.desired}, max {capacity.max})"
        )
        self._changed()

    # --- signals, updates, query ------------------------------------------------

    @workflow.signal(name="metrics")
    def metrics(self, report: MetricReport) -> None:
        """Samples pushed for the job's policies; those of metrics no policy reads are dropped."""
        autoscaling = self._autoscaling
        if autoscaling is not None and autoscaling.metrics:
            self._add_report(autoscaling, report)

    def _add_report(self, autoscaling: Autoscaling, report: MetricReport) -> None:
        """Keep the samples of ``report`` that a policy reads."""
        self._metric_buffer(autoscaling).add_report(report, workflow.now(), autoscaling.metrics)

    @workflow.signal(name="scheduled_action")
    def scheduled_action(self, action: ScheduledAction) -> None:
        """A scheduled action is due (sent by the job's Temporal Schedule): set the capacity.

        Ignored when the current revision has no action of that name any more
        (its schedule is about to be deleted); recorded without change while
        autoscaling is paused.
        """
        autoscaling = self._autoscaling
        names = [a.name for a in autoscaling.scheduled] if autoscaling is not None else []
        if action.name not in names:
            return
        current = self._capacity
        now = CapacityNow(current.min, current.desired, current.max)
        target = scheduled_capacity(now, action)
        paused = self._autoscaling_paused
        reason = f"paused: not applied ({describe_action(action)})" if paused else None
        record = AutoscalingDecision(
            at=workflow.now(),
            old_desired=current.desired,
            new_desired=None if paused or target.desired == now.desired else target.desired,
            policy=f"{SCHEDULED_PREFIX}{action.name}",
            reason=reason or f"scheduled {action.cron!r}: {describe_action(action)}",
        )
        capacity = None if paused else self._scaled_to(target.desired, target.min, target.max)
        self._decided(record, capacity)

    @workflow.update(name="autoscaling_control")
    def autoscaling_control(self, paused: bool) -> bool:
        """Pause (True) or resume (False) the policies and scheduled actions; the new state."""
        self._scaling.paused = paused
        self.journal.scaling(f"autoscaling {'paused' if paused else 'resumed'} by request")
        return paused

    @autoscaling_control.validator
    def _validate_autoscaling_control(self, paused: bool) -> None:
        autoscaling = self._autoscaling
        if autoscaling is None or not (autoscaling.policies or autoscaling.scheduled):
            raise ApplicationError(
                f"job {self._job_id} has no autoscaling policies or scheduled actions to"
                f" {'pause' if paused else 'resume'}",
                type="InvalidRequest",
                non_retryable=True,
            )

    @workflow.query(name="autoscaling")
    def autoscaling(self) -> AutoscalingView:
        """The job's policies, current metric values, latest decisions and schedules."""
        autoscaling = self._autoscaling
        situation = self._situation(autoscaling) if autoscaling is not None else None
        buffer = self._scaling.buffer
        return AutoscalingView.build(
            job_id=self._job_id,
            autoscaling=autoscaling,
            capacity=self._capacity,
            paused=self._autoscaling_paused,
            held=pause_reason(situation) if situation is not None else None,
            metrics=buffer.averages(workflow.now()) if buffer is not None else {},
            read_errors=self._read_errors,
            decisions=self._scaling.decisions,
            next_evaluation=self._next_evaluation,
        )

    # --- state ------------------------------------------------------------------

    def _metric_buffer(self, autoscaling: Autoscaling) -> MetricBuffer:
        """The buffer, made on first use, over the spec's current window."""
        buffer = self._scaling.buffer
        if buffer is None:
            buffer = self._scaling.buffer = MetricBuffer(window=autoscaling.window)
        elif buffer.window != autoscaling.window:  # an update changed it
            buffer.window = autoscaling.window
        return buffer

    def _autoscaling_carry(self) -> AutoscalingCarry | None:
        """What the next run takes over (None when there is nothing to carry)."""
        carry = self._scaling
        if (
            carry.buffer is None
            and not carry.decisions
            and carry.paused is None
            and not carry.schedules
        ):
            return None
        return carry
