"""A service job's autoscaling: the metrics it receives and the decisions its policies make.

:class:`ServiceAutoscaling` sits between
:class:`~titus_flow.workflows.service_handlers.ServiceHandlers` and
:class:`~titus_flow.workflows.service.ServiceJobWorkflow`. It keeps the
samples pushed with the ``metrics`` signal in a bounded
:class:`~titus_flow.autoscaling.buffer.MetricBuffer` (only metrics a policy
reads), and carries them, the latest decisions and a run-time pause over
continue-as-new.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow.autoscaling.buffer import MetricBuffer
    from titus_flow.contracts import ServiceJobInput
    from titus_flow.contracts.autoscaling import AutoscalingCarry
    from titus_flow.contracts.metric_reports import MetricReport
    from titus_flow.spec import Autoscaling
    from titus_flow.workflows.service_handlers import ServiceHandlers


class ServiceAutoscaling(ServiceHandlers):
    """The autoscaling state of a service job, and the handlers that feed and show it."""

    _scaling: AutoscalingCarry

    def _init_autoscaling(self, request: ServiceJobInput) -> None:
        """Take over the autoscaling state the previous run carried (none for a new job)."""
        self._scaling = request.autoscaling or AutoscalingCarry()
        request.autoscaling = None  # the next carry is made from the current state

    @property
    def _autoscaling(self) -> Autoscaling | None:
        """The current revision's autoscaling, if it has any."""
        return self._spec.autoscaling

    @workflow.signal(name="metrics")
    def metrics(self, report: MetricReport) -> None:
        """Samples pushed for the job's policies; those of metrics no policy reads are dropped."""
        autoscaling = self._autoscaling
        wanted = autoscaling.metrics if autoscaling is not None else []
        if not wanted:
            return
        assert autoscaling is not None
        self._metric_buffer(autoscaling).add_report(report, workflow.now(), wanted)

    def _metric_buffer(self, autoscaling: Autoscaling) -> MetricBuffer:
        """The buffer, made on first use, over the spec's current window and metrics."""
        buffer = self._scaling.buffer
        if buffer is None:
            buffer = self._scaling.buffer = MetricBuffer(window=autoscaling.window)
        elif buffer.window != autoscaling.window:  # an update changed it
            buffer.window = autoscaling.window
        return buffer

    def _autoscaling_carry(self) -> AutoscalingCarry | None:
        """What the next run takes over (None when there is nothing to carry)."""
        carry = self._scaling
        if carry.buffer is None and not carry.decisions and carry.paused is None:
            return None
        return carry
