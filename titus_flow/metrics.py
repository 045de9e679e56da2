"""Names of titus-flow's Prometheus metrics (issue #15), in one place.

Workflows (``workflow.metric_meter()``), activities (``activity.metric_meter()``)
and process code (the process's ``Runtime.metric_meter``) all create their
instruments under these names, and the Grafana dashboard in
``docs/grafana-dashboard.json`` may query only these (a unit test checks it).
Names follow kube-state-metrics and Nomad: ``titus_flow_<thing>`` with bounded
labels only. A label value is never a task, job, agent or workflow id.

The Prometheus exporter adds ``_total`` to counters and the unit suffix to
histograms (``_seconds``) as it exports them; :func:`exported_names` lists the
names a scrape shows.

Pure constants: workflows import this module directly (it is sandbox-safe).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "titus_flow_"

# --- emitted by workflows (helper `events`) ---------------------------------
JOBS_SUBMITTED: Final = "titus_flow_jobs_submitted"  # counter {job_type}
JOBS_FINISHED: Final = "titus_flow_jobs_finished"  # counter {job_type, state}
TASK_TRANSITIONS: Final = "titus_flow_task_transitions"  # counter {job_type, state, reason}
TASK_TRANSITION_LATENCY: Final = (
    "titus_flow_task_transition_latency"  # histogram s {job_type, transition}
)
TASK_RETRIES: Final = "titus_flow_task_retries"  # counter {job_type, reason}
OOM_KILLS: Final = "titus_flow_oom_kills"  # counter {job_type}
HEALTH_CHECK_FAILURES: Final = "titus_flow_health_check_failures"  # counter {job_type}
PLACEMENT_LATENCY: Final = "titus_flow_placement_latency"  # histogram s {}
PENDING_TASKS: Final = "titus_flow_pending_tasks"  # gauge {reason}
AGENTS_LOST: Final = "titus_flow_agents_lost"  # counter {}
AGENTS: Final = "titus_flow_agents"  # gauge {state}
AGENT_CAPACITY: Final = "titus_flow_agent_capacity"  # gauge {resource}
AGENT_RESERVED: Final = "titus_flow_agent_reserved"  # gauge {resource}
CAPACITY_GROUP_USAGE: Final = "titus_flow_capacity_group_usage"  # gauge {capacity_group, resource}
CAPACITY_GROUP_GUARANTEE: Final = (
    "titus_flow_capacity_group_guarantee"  # gauge {capacity_group, resource}
)
ROLLING_UPDATE_TASKS: Final = "titus_flow_rolling_update_tasks"  # counter {phase}
FLEET_INSTANCES: Final = "titus_flow_fleet_instances"  # gauge {state}

# --- emitted by processes and activities (helper `metrics`) -----------------
AGENT_TASKS_RUNNING: Final = "titus_flow_agent_tasks_running"  # gauge {driver}
AGENT_LAUNCHES: Final = "titus_flow_agent_launches"  # counter {driver, result}
LOG_UPLOADS: Final = "titus_flow_log_uploads"  # counter {result}
PROCESS_INFO: Final = "titus_flow_process_info"  # gauge {role, version} = 1

COUNTERS: Final[frozenset[str]] = frozenset(
    {
        JOBS_SUBMITTED,
        JOBS_FINISHED,
        TASK_TRANSITIONS,
        TASK_RETRIES,
        OOM_KILLS,
        HEALTH_CHECK_FAILURES,
        AGENTS_LOST,
        ROLLING_UPDATE_TASKS,
        AGENT_LAUNCHES,
        LOG_UPLOADS,
    }
)
HISTOGRAMS: Final[frozenset[str]] = frozenset({TASK_TRANSITION_LATENCY, PLACEMENT_LATENCY})
GAUGES: Final[frozenset[str]] = frozenset(
    {
        PENDING_TASKS,
        AGENTS,
        AGENT_CAPACITY,
        AGENT_RESERVED,
        CAPACITY_GROUP_USAGE,
        CAPACITY_GROUP_GUARANTEE,
        FLEET_INSTANCES,
        AGENT_TASKS_RUNNING,
        PROCESS_INFO,
    }
)
ALL: Final[frozenset[str]] = COUNTERS | HISTOGRAMS | GAUGES

# Label keys: the only ones titus-flow's own metrics use (bounded values each).
LABEL_KEYS: Final[frozenset[str]] = frozenset(
    {
        "job_type",
        "state",
        "reason",
        "transition",
        "resource",
        "capacity_group",
        "phase",
        "driver",
        "result",
        "role",
        "version",
    }
)

# Histogram unit: seconds, so the exporter names them ``..._seconds_*``.
SECONDS: Final = "s"


def exported_names(name: str) -> frozenset[str]:
    """The series names a Prometheus scrape shows for metric ``name``."""
    if name in COUNTERS:
        return frozenset({name, f"{name}_total"})
    if name in HISTOGRAMS:
        return frozenset(
            f"{base}{suffix}"
            for base in (name, f"{name}_seconds")
            for suffix in ("_bucket", "_sum", "_count")
        )
    return frozenset({name})


def defined_name(series: str) -> str | None:
    """The titus-flow metric a scraped or queried series name belongs to, if any."""
    for name in ALL:
        if series in exported_names(name):
            return name
    return None
