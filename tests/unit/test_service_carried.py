"""A service run's live tasks carried across continue-as-new: compact, bounded, read back the same.

Issue 11: nothing carried in one payload may grow past Temporal's 512 KiB warning
with the number of tasks. The previous release carried whole records (~620
bytes a task: 635,800 bytes at 1,000 tasks in bench/scale.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from titus_flow import Capacity, Container, Resources, ServiceJob, TcpCheck
from titus_flow.cluster import agent_task_queue
from titus_flow.contracts import (
    CarriedService,
    ServiceJobInput,
    ServiceTaskRecord,
)
from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.history_stats import PAYLOAD_BYTES_WARN
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.views import AttemptView, JobView, ServiceStatus, TaskView

BASE = datetime(2026, 1, 1, tzinfo=UTC)
JOB = "scale-svc-1a2b3c4d"
SPEC = ServiceJob(
    name="scale-svc",
    container=Container(image="busybox:latest", command="sleep 1d", ports=["http", "admin"]),
    health_check=TcpCheck(port="http"),
    resources=Resources(cpu=0.01, memory=16),
    capacity=Capacity(min=0, desired=5000, max=5000),
)


def live(index: int, revision: int = 1, **flags: bool) -> ServiceTaskRecord:
    """A Started, healthy task on one of 1,000 hollow agents, as a run holds it."""
    agent = f"hollow-7f3a9c2e-{index % 1000:05d}"
    launched = BASE + timedelta(seconds=index, milliseconds=index % 997)
    started = launched + timedelta(milliseconds=250)
    ports = {"http": 20000 + index % 10000, "admin": 30000 + index % 10000}
    view = TaskView(
        id=f"{JOB}-{index}",
        index=index,
        state=TaskState.STARTED,
        message="tcp check passed",
        attempt=1,
        agent=agent,
        revision=revision,
        healthy=True,
        ports=dict(ports),
        attempts=[
            AttemptView(
                attempt=1,
                agent=agent,
                state=TaskState.STARTED,
                launched_at=launched,
                started_at=started,
            )
        ],
    )
    return ServiceTaskRecord(
        view=view,
        task_queue=agent_task_queue(agent),
        ports=ports,
        started_at=started,
        was_healthy=True,
        **flags,
    )


def finished(index: int) -> TaskView:
    """A task that failed loudly: a long message and a long log tail."""
    return TaskView(
        id=f"{JOB}-{index}",
        index=index,
        state=TaskState.FINISHED,
        reason=FinishReason.FAILED,
        message="exited with code 1: " + "x" * 4000,
        attempt=1,
        revision=1,
        healthy=False,
        attempts=[AttemptView(attempt=1, state=TaskState.FINISHED, reason=FinishReason.FAILED)],
        log_tail=["y" * 200] * 100,
    )


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as the worker puts it in a history event."""
    return WORKER_DATA_CONVERTER.payload_converter.to_payloads([value])[0].ByteSize()


def carried_input(tasks: int) -> ServiceJobInput:
    """A continue-as-new input of this release with ``tasks`` live tasks."""
    records = [live(n) for n in range(tasks)]
    return ServiceJobInput(
        job=SPEC,
        previous=SPEC,
        previous_revision=1,
        revision=2,
        latest_revision=2,
        submitted_at=BASE,
        finished=[finished(n).bounded() for n in range(20)],
        carried=CarriedService.of(records, BASE + timedelta(hours=2)),
        next_index=tasks + 20,
    )


@pytest.mark.parametrize("tasks", [1000, 5000, 10_000])
def test_the_carried_input_stays_below_the_payload_warning(tasks: int) -> None:
    """Up to a service's largest size (10,000), with 20 loud finished tasks kept."""
    carried = carried_input(tasks)
    size = encoded_size(carried)
    assert size < PAYLOAD_BYTES_WARN, size
    # About 40 bytes a task plus each agent's id once (the old records took ~620).
    assert encoded_size(carried.carried) < 40 * tasks + 30 * 1000, size
    if tasks <= 5000:
        assert size < PAYLOAD_BYTES_WARN * 3 // 5, size  # well below


def test_whole_records_were_the_problem() -> None:
    """The previous release's carry of the same 1,000 tasks passes the warning on its own."""
    records = [live(n) for n in range(1000)]
    old = ServiceJobInput(job=SPEC, submitted_at=BASE, tasks=records)
    assert encoded_size(old) > PAYLOAD_BYTES_WARN
    new = carried_input(1000).model_copy(update={"finished": []})
    assert encoded_size(new) * 8 < encoded_size(old)


def test_carried_records_read_back_as_they_were() -> None:
    records = [
        live(0),
        live(1, revision=2, moving=True),
        live(2, kill_held=True),
        live(3).model_copy(update={"task_queue": "elsewhere"}),
    ]
    records[1].view.healthy = None
    records[2].was_healthy = False
    unplaced = ServiceTaskRecord(view=TaskView(id=f"{JOB}-4", index=4, revision=1, healthy=False))
    records.append(unplaced)
    carried = CarriedService.of(records, BASE + timedelta(days=30))
    decoded = ServiceJobInput.model_validate_json(
        ServiceJobInput(job=SPEC, submitted_at=BASE, carried=carried).model_dump_json()
    )
    assert decoded.carried is not None
    assert decoded.carried.records(JOB) == records


def test_times_round_once_and_never_drift_along_rows_or_runs() -> None:
    """Times off the millisecond (a real clock's) are rounded once: never further
    than half a millisecond from the truth, however many rows or runs carry them.

    (Deltas from the exact previous time rounded independently added up: after 150
    rows and a continue-as-new a task read back more than a millisecond late.)
    """
    exact = []
    for index in range(300):
        record = live(index)
        attempt = record.view.attempts[0]
        assert attempt.launched_at is not None and record.started_at is not None
        jitter = timedelta(microseconds=index * 300 % 1000)  # deltas of n.3 or n-0.7 ms
        attempt.launched_at += jitter
        record.started_at += jitter * 2
        attempt.started_at = record.started_at
        exact.append(record)
    records = exact
    for run in range(5):  # each continue-as-new re-encodes from a base off the millisecond
        base = BASE + timedelta(days=30, seconds=run, microseconds=123_457 * (run + 1))
        records = CarriedService.of(records, base).records(JOB)
        for before, after in zip(exact, records, strict=True):
            assert before.started_at is not None and after.started_at is not None
            assert abs(after.started_at - before.started_at) <= timedelta(microseconds=500)
            launched = before.view.attempts[0].launched_at
            relaunched = after.view.attempts[0].launched_at
            assert launched is not None and relaunched is not None
            assert abs(relaunched - launched) <= timedelta(microseconds=500)


def test_an_input_of_the_previous_release_still_decodes() -> None:
    """Whole records under ``tasks``, no ``carried``: what the last release continued with."""
    old = ServiceJobInput(job=SPEC, submitted_at=BASE, tasks=[live(0), live(1)])
    data = old.model_dump(mode="json")
    data.pop("carried")
    decoded = ServiceJobInput.model_validate(data)
    assert decoded.carried is None and decoded.tasks == old.tasks


def big_service_view(tasks: int, new: int) -> JobView:
    """A service mid-update: ``new`` healthy tasks on revision 2, the rest on revision 1."""
    views = [live(n, revision=2 if n < new else 1).view for n in range(tasks)]
    return JobView(
        id=JOB,
        name="scale-svc",
        type="service",
        state=JobState.RUNNING,
        tasks=views,
        service=ServiceStatus(
            desired=tasks,
            min=0,
            max=tasks,
            revision=2,
            healthy=tasks,
            live_by_revision={2: new, 1: tasks - new},
            healthy_by_revision={2: new, 1: tasks - new},
        ),
    )


def test_a_bounded_service_view_counts_from_its_status() -> None:
    view = big_service_view(5000, new=4999)
    bounded = view.bounded()
    assert bounded.total_tasks == 5000 and len(bounded.tasks) < 5000
    assert encoded_size(bounded) < PAYLOAD_BYTES_WARN
    assert bounded.counts() == {"Started": 5000}
    # The old-revision task (index 4999) is not among the rows kept, and still counts.
    assert all(t.revision == 2 for t in bounded.tasks)
    assert bounded.healthy_tasks() == 5000 and bounded.healthy_tasks(2) == 4999
    assert bounded.runs_other_revisions(2)
    assert not big_service_view(5000, new=5000).bounded().runs_other_revisions(2)


def test_a_small_service_view_counts_its_rows() -> None:
    view = big_service_view(3, new=2)
    assert view.bounded().total_tasks is None
    assert view.healthy_tasks(2) == 2 and view.runs_other_revisions(2)
