"""The metric-name constants of titus_flow.metrics (issue #15)."""

from __future__ import annotations

from titus_flow import metrics


def test_every_name_is_prefixed_and_has_one_kind() -> None:
    assert metrics.ALL
    for name in metrics.ALL:
        assert name.startswith(metrics.PREFIX)
        kinds = [name in metrics.COUNTERS, name in metrics.HISTOGRAMS, name in metrics.GAUGES]
        assert kinds.count(True) == 1, name


def test_exported_names_map_back_to_their_metric() -> None:
    assert metrics.defined_name("titus_flow_task_transitions_total") == metrics.TASK_TRANSITIONS
    assert metrics.defined_name("titus_flow_placement_latency_bucket") == metrics.PLACEMENT_LATENCY
    assert metrics.defined_name("titus_flow_agent_tasks_running") == metrics.AGENT_TASKS_RUNNING
    assert metrics.defined_name("titus_flow_unknown") is None
    assert metrics.defined_name("temporal_workflow_completed") is None
