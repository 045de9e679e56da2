"""Bounded label values of the metrics the workflows emit (names: :mod:`titus_flow.metrics`).

Label values come from closed sets (job types, task and job states, finish
reasons, transitions, resources, ...), never from ids: :func:`bounded_labels` refuses
any other value, so a metric series cannot multiply with jobs, tasks or agents.
"""

from __future__ import annotations

from collections.abc import Mapping

from titus_flow.lifecycle import FinishReason, JobState, TaskState

ACCEPTED_TO_LAUNCHED = "accepted_to_launched"
LAUNCHED_TO_STARTED = "launched_to_started"
RESOURCES = ("cpu_millicores", "memory_mib", "disk_mib", "gpu", "network_mbps")
PENDING_REASONS = ("capacity", "capacity_group")
"""Why tasks wait, as ``titus_flow_pending_tasks`` counts them: no agent has room, or
their capacity group holds them back (the full reason is on each task)."""
FLEET_INSTANCE_STATES = {None: "running", "drain": "draining", "terminate": "terminating"}
"""A fleet instance's ``state`` label, by how it is leaving (None: it is not)."""
UPDATE_PHASES = ("started", "retired", "rolled_back")
"""``titus_flow_rolling_update_tasks`` phases: tasks an update started on its revision, old
tasks it stopped, and updates rolled back."""
CONFIGURED = frozenset({"capacity_group", "fleet"})
"""Labels whose values are names an operator defines (a handful), not ids: any is taken."""

ALLOWED: Mapping[str, frozenset[str]] = {
    "job_type": frozenset({"batch", "service"}),
    "state": frozenset(
        {s.value for s in TaskState}
        | {s.value for s in JobState}
        | {"active", "draining", "lost", *FLEET_INSTANCE_STATES.values()}
    ),
    "reason": frozenset({r.value for r in FinishReason} | {"", *PENDING_REASONS}),
    "transition": frozenset({ACCEPTED_TO_LAUNCHED, LAUNCHED_TO_STARTED}),
    "resource": frozenset(RESOURCES),
    "phase": frozenset(UPDATE_PHASES),
}
"""Every label a workflow metric may carry, and the values it may take."""


def bounded_labels(**values: str) -> dict[str, str]:
    """The label set ``values``, checked to be bounded; ValueError on an unknown label or value."""
    for name, value in values.items():
        if name in CONFIGURED:
            continue
        allowed = ALLOWED.get(name)
        if allowed is None or value not in allowed:
            raise ValueError(f"unbounded metric label {name}={value!r}")
    return values
