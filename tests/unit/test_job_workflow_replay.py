"""titus-flow's own job workflows replay histories recorded by the previous release.

The histories in ``tests/histories`` were recorded on a dev server with the
release before failed jobs failed their workflow and zero disruption budgets
were honoured: a Succeeded, a Failed, a Killed and a partitioned Failed batch
job, and a service job with ``max_unavailable: 0`` whose task was killed (at
once, as that release did) before the job was killed. The ``service-idle-*``,
``service-crash-loop-*`` and ``service-update-deadline-*`` histories were
recorded by the release whose service loop also woke every 5 s (an idle
service scaled to two, a crash loop through its backoffs, an update rolled
back at its health deadline). A job workflow that was running when the worker
was upgraded replays its history through the new code, so the new code must
take the same steps on them (``workflow.patched``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.worker import SANDBOX
from titus_flow.workflows.batch import BatchJobWorkflow
from titus_flow.workflows.service import ServiceJobWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


def history(name: str) -> WorkflowHistory:
    """A recorded history (gzipped ``temporal workflow show -o json`` output)."""
    events = json.loads(gzip.decompress((HISTORIES / f"{name}.json.gz").read_bytes()))
    started = events["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started["workflowId"], events)


@pytest.mark.parametrize(
    "name",
    [
        "batch-succeeded",
        "batch-failed",
        "batch-killed",
        "batch-partitioned-failed",
        "service-zero-budget-killed",
        # Recorded by the release whose service loop also woke every 5 s.
        "service-idle-scaled-killed",
        "service-crash-loop-killed",
        "service-update-deadline-rolled-back",
        # Recorded by this release: the in-order, paced scheduler mailbox
        # (workflows/common.py, MAILBOX_PATCH) with tasks whose first attempt was lost.
        "batch-retried-at-once",
        # Recorded by the release before bounded job views (a fake agent; task 501
        # of 502 fails): the root of a partitioned job and its failed partition.
        "batch-partitioned-root-v2",
        "batch-partition-failed-v2",
    ],
)
async def test_previous_release_history_replays(name: str) -> None:
    replayer = Replayer(
        workflows=[BatchJobWorkflow, ServiceJobWorkflow],
        data_converter=WORKER_DATA_CONVERTER,
        workflow_runner=SANDBOX,
    )
    result = await replayer.replay_workflow(history(name), raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
