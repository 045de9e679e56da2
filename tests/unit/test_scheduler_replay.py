"""The scheduler workflow replays histories recorded by the previous release.

``tests/histories/scheduler-run-*.json.gz`` were recorded by
``scripts/record_histories.py`` with the release before the bounded scheduler
(issue 11): a dev server that suggests continue-as-new after 80 events, two
process-driver agents, a job that succeeds, a job whose tasks retry and fail,
a capacity group put, a drain of one agent and its loss (SIGKILL). Run 1 was
started by an agent's signal-with-start; run 2 starts from the ledger that run
1 carried over (the previous release's ``LedgerState`` input). A scheduler that
was running when the control worker was upgraded replays its history through
the new code, so the new code must take the same steps on them.
"""

from __future__ import annotations

import pytest
from temporalio.worker import Replayer
from test_job_workflow_replay import history

from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.worker import SANDBOX
from titus_flow.workflows.scheduler import SchedulerWorkflow


@pytest.mark.parametrize("name", ["scheduler-run-1", "scheduler-run-2"])
async def test_previous_release_scheduler_history_replays(name: str) -> None:
    replayer = Replayer(
        workflows=[SchedulerWorkflow],
        data_converter=WORKER_DATA_CONVERTER,
        workflow_runner=SANDBOX,
    )
    result = await replayer.replay_workflow(history(name), raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
