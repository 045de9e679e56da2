"""Every recorded history of a built-in workflow replays through this code (issue 13).

``tests/histories`` holds histories recorded on a dev server with real worker
and agent processes by ``scripts/record_histories.py`` (rerun it to add more;
it never overwrites one). A workflow that was running when the control worker
was upgraded replays its history through the new code, so a change to a
built-in workflow must take the same steps on every one of them: a change of
behaviour goes behind ``workflow.patched`` (docs/architecture.md, "Versioning
built-in workflows").

Recorded by this release (issue 13): a fleet on moto growing from 0 to 2
instances for a job then shrinking to 0 and deleted (``fleet``), a DAG that
succeeds and one whose middle node fails (``dag-*``), a service canary promoted
and one rolled back (``service-canary-*``), a batch job that continues as new
twice (``batch-continued-run-*``) and the scheduler scenario
(``scheduler-v0.2.0-run-*``: three runs of about 80 events). Issue 14 added
a 2-task service with two scheduled actions, one triggered, the other dropped
by an update, then killed (``service-scheduled-killed``) and the
``ScheduledScaling`` run that applied the first (``scheduled-scaling``), and a
2-task service on a pushed metric held within its tolerance, scaled out to 4
and in to 1, then killed (``service-autoscaled-killed``); the same scenario
recorded by 669b836, before target tracking had a tolerance, where the first
push (5 % over the target) scales out to 3 (``service-autoscaled-no-tolerance-killed``:
what ``workflow.patched("autoscaling-target-tolerance")`` keeps). The histories of
earlier releases are also replayed here, with the workflow types they name;
``test_job_workflow_replay.py`` and ``test_scheduler_replay.py`` say what those are.
"""

from __future__ import annotations

import pytest
from temporalio.worker import Replayer
from test_job_workflow_replay import HISTORIES, history

from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.worker import CONTROL_WORKFLOWS, SANDBOX

RECORDED_BY_THIS_RELEASE = [
    "fleet",
    "dag-succeeded",
    "dag-node-failed",
    "service-canary-promoted",
    "service-canary-rolled-back",
    "batch-continued-run-1",
    "batch-continued-run-2",
    "batch-continued-run-3",
    "scheduler-v0.2.0-run-1",
    "scheduler-v0.2.0-run-2",
    "scheduler-v0.2.0-run-3",
    "service-scheduled-killed",
    "scheduled-scaling",
    "service-autoscaled-killed",
    "service-autoscaled-no-tolerance-killed",
]

EVERY_HISTORY = sorted(p.name.removesuffix(".json.gz") for p in HISTORIES.glob("*.json.gz"))


def replayer() -> Replayer:
    """A replayer of every workflow the control worker runs, as it runs them."""
    return Replayer(
        workflows=list(CONTROL_WORKFLOWS),
        data_converter=WORKER_DATA_CONVERTER,
        workflow_runner=SANDBOX,
    )


def workflow_type(name: str) -> str:
    """The workflow type a recorded history is of."""
    started = history(name).events[0].workflow_execution_started_event_attributes
    return started.workflow_type.name


def test_this_releases_histories_are_kept() -> None:
    assert set(RECORDED_BY_THIS_RELEASE) <= set(EVERY_HISTORY)


def test_every_builtin_workflow_has_recorded_histories() -> None:
    # FetchLogs only runs one activity: nothing of its own to replay.
    builtin = {getattr(w, "__temporal_workflow_definition").name for w in CONTROL_WORKFLOWS}
    assert builtin - {"FetchLogs"} <= {workflow_type(n) for n in EVERY_HISTORY}


@pytest.mark.parametrize("name", EVERY_HISTORY)
async def test_recorded_history_replays(name: str) -> None:
    result = await replayer().replay_workflow(history(name), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{name}: {result.replay_failure}"
