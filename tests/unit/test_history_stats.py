"""history_stats: finding the largest payload inside an event, and the bounds it reports."""

from __future__ import annotations

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from titus_flow.history_stats import (
    HistorySize,
    HistoryStats,
    PayloadSize,
    RunRef,
    _largest_payload_of,
    _payload_sizes,
)


def _event() -> HistoryEvent:
    event = HistoryEvent(event_id=1, event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    started = event.workflow_execution_started_event_attributes
    started.input.payloads.extend([Payload(data=b"a" * 1000), Payload(data=b"b" * 500)])
    started.header.fields["trace"].CopyFrom(Payload(data=b"c" * 2000))
    started.memo.fields["note"].CopyFrom(Payload(data=b"d" * 10))
    return event


def test_payloads_count_whole_and_maps_of_payloads_are_found() -> None:
    sizes = dict(_payload_sizes(_event(), ""))
    prefix = "workflow_execution_started_event_attributes"
    assert set(sizes) == {f"{prefix}.input", f"{prefix}.header.fields", f"{prefix}.memo.fields"}
    assert 1500 < sizes[f"{prefix}.input"] < 1600  # both arguments: Temporal bounds them as one
    assert 2000 < sizes[f"{prefix}.header.fields"] < 2100


def test_the_largest_payload_names_its_event() -> None:
    stats = HistoryStats()
    _largest_payload_of(_event(), RunRef("job-1", "run-1"), stats)
    assert stats.largest_payload is not None
    assert stats.largest_payload.event_type == "WorkflowExecutionStarted"
    assert stats.largest_payload.field.endswith("header.fields")
    assert str(stats.largest_payload).startswith(f"{stats.max_payload_bytes} B in job-1 event 1")


def test_problems_name_what_passes_the_bounds() -> None:
    run = RunRef("scheduler", "r1")
    stats = HistoryStats(
        histories=[HistorySize(run, 20_000, 10**6), HistorySize(RunRef("job", "r2"), 10, 100)],
        largest_payload=PayloadSize(600_000, run, 7, "WorkflowExecutionContinuedAsNew", "input"),
    )
    problems = stats.problems()
    assert len(problems) == 2
    assert "scheduler run r1: 20000 events" in problems[0]
    assert "600000 B in scheduler event 7" in problems[1]
    assert stats.problems(max_events=50_000, max_payload=2 * 1024 * 1024) == []
