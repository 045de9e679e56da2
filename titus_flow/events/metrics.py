"""Names and bounded labels of the metrics the workflows emit (agreed in issue #15).

Label values come from closed sets (job types, task and job states, finish
reasons, transitions, resources), never from ids: :func:`labels` refuses any
other value, so a metric series cannot multiply with jobs, tasks or agents.
"""

from __future__ import annotations

from collections.abc import Mapping

from titus_flow.lifecycle import FinishReason, JobState, TaskState

JOBS_SUBMITTED = "titus_flow_jobs_submitted"
JOBS_FINISHED = "titus_flow_jobs_finished"
TASK_TRANSITIONS = "titus_flow_task_transitions"
TASK_TRANSITION_LATENCY = "titus_flow_task_transition_latency"
TASK_RETRIES = "titus_flow_task_retries"
OOM_KILLS = "titus_flow_oom_kills"
HEALTH_CHECK_FAILURES = "titus_flow_health_check_failures"
PLACEMENT_LATENCY = "titus_flow_placement_latency"
PENDING_TASKS = "titus_flow_pending_tasks"
AGENTS_LOST = "titus_flow_agents_lost"
AGENTS = "titus_flow_agents"
AGENT_CAPACITY = "titus_flow_agent_capacity"
AGENT_RESERVED = "titus_flow_agent_reserved"
ROLLING_UPDATE_TASKS = "titus_flow_rolling_update_tasks"

ACCEPTED_TO_LAUNCHED = "accepted_to_launched"
LAUNCHED_TO_STARTED = "launched_to_started"
RESOURCES = ("cpu_millicores", "memory_mib", "disk_mib", "gpu", "network_mbps")

ALLOWED: Mapping[str, frozenset[str]] = {
    "job_type": frozenset({"batch", "service"}),
    "state": frozenset({s.value for s in TaskState} | {s.value for s in JobState}),
    "reason": frozenset({r.value for r in FinishReason} | {""}),
    "transition": frozenset({ACCEPTED_TO_LAUNCHED, LAUNCHED_TO_STARTED}),
    "resource": frozenset(RESOURCES),
    "phase": frozenset({"updated", "remaining"}),
}
"""Every label a workflow metric may carry, and the values it may take."""


def labels(**values: str) -> dict[str, str]:
    """The label set ``values``, checked to be bounded; ValueError on an unknown label or value."""
    for name, value in values.items():
        allowed = ALLOWED.get(name)
        if allowed is None or value not in allowed:
            raise ValueError(f"unbounded metric label {name}={value!r}")
    return values
