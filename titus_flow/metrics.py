"""Names of titus-flow's Prometheus metrics (issue #15), in one place.

Workflows (``workflow.metric_meter()``), activities (``activity.metric_meter()``)
and process code (the process's ``Runtime.metric_meter``) all create their
instruments under these names, and the Grafana dashboard in
``docs/grafana-dashboard.json`` may query only these (a unit test checks it).
Names follow kube-state-metrics and Nomad: ``titus_flow_<thing>`` with bounded
labels only. A label value is never a task, job, agent or workflow id.

The Prometheus exporter (:mod:`titus_flow.telemetry`) adds ``_total`` to
counters and no unit suffix (histograms are in seconds, as their names say
nothing else); :func:`exported_names` lists the names a scrape shows, and
:func:`parse_scrape` reads one.

Pure constants: workflows import this module directly (it is sandbox-safe).
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

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
# counter {phase}: started, retired, rolled_back
ROLLING_UPDATE_TASKS: Final = "titus_flow_rolling_update_tasks"
FLEET_INSTANCES: Final = "titus_flow_fleet_instances"  # gauge {fleet, state}

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

# The temporalio SDK's own metrics the dashboard shows (served on the same endpoint).
SDK_COUNTERS: Final[frozenset[str]] = frozenset(
    {"temporal_workflow_completed", "temporal_workflow_failed", "temporal_request_failure"}
)
SDK_HISTOGRAMS: Final[frozenset[str]] = frozenset(
    {
        "temporal_workflow_task_schedule_to_start_latency",
        "temporal_activity_schedule_to_start_latency",
        "temporal_workflow_task_execution_latency",
    }
)
SDK_GAUGES: Final[frozenset[str]] = frozenset(
    {"temporal_worker_task_slots_used", "temporal_worker_task_slots_available"}
)
SDK: Final[frozenset[str]] = SDK_COUNTERS | SDK_HISTOGRAMS | SDK_GAUGES

# Label keys: the only ones titus-flow's own metrics use (bounded values each).
LABEL_KEYS: Final[frozenset[str]] = frozenset(
    {
        "job_type",
        "state",
        "reason",
        "transition",
        "resource",
        "capacity_group",
        "fleet",
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
    """The series names a Prometheus scrape shows for metric ``name`` (ours or the SDK's)."""
    if name in COUNTERS or name in SDK_COUNTERS:
        return frozenset({name, f"{name}_total"})
    if name in HISTOGRAMS or name in SDK_HISTOGRAMS:
        return frozenset(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return frozenset({name})


def defined_name(series: str, *, sdk: bool = False) -> str | None:
    """The titus-flow metric (or with ``sdk``, also SDK metric) a series belongs to, if any."""
    for name in ALL | SDK if sdk else ALL:
        if series in exported_names(name):
            return name
    return None


class Sample(NamedTuple):
    """One line of a Prometheus text exposition: series name, labels, value."""

    name: str
    labels: dict[str, str]
    value: float


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_scrape(text: str) -> list[Sample]:
    """The samples of a ``/metrics`` answer (text format 0.0.4), comments skipped."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        pairs = {key: raw.replace('\\"', '"') for key, raw in _LABEL.findall(labels or "")}
        samples.append(Sample(name, pairs, float(value)))
    return samples


def total(samples: list[Sample], series: str, **labels: str) -> float:
    """Sum of the ``series`` samples whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples
        if s.name == series and all(s.labels.get(k) == v for k, v in labels.items())
    )
