"""How runs end, as Temporal sees them: real dev server, worker and process-driver agent.

- A workflow started with input it cannot decode fails at once (or the CLI
  refuses it, exit 2, before starting anything), never retrying forever.
- A job that did not succeed fails its workflow (``JobFailed``, ``JobKilled``),
  so the Web UI tells failed jobs from succeeded ones; every reader still gets
  the whole view, and ``run_job`` still raises ``JobFailedError``.
- A disruption budget of 0 holds a task kill until a replacement is healthy.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from titus_cluster import Cluster, eventually

from titus_flow import BatchJob, Capacity, Container, DisruptionBudget, Resources, ServiceJob
from titus_flow.client import TitusClient
from titus_flow.lifecycle import FinishReason, JobState, TaskState

pytestmark = pytest.mark.asyncio(loop_scope="session")

PIPELINE = str(Path(__file__).parents[2] / "examples" / "pipeline.py")
SMALL = Resources(cpu=0.01, memory=8, disk=0, network_mbps=0)

FLOWS = """
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow import BatchJob, Container, Resources
    from titus_flow.flow import JobFailedError, run_job, start_job


def _sh(name: str, script: str) -> BatchJob:
    return BatchJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", script]),
        resources=Resources(cpu=0.01, memory=8, disk=0, network_mbps=0),
    )


@workflow.defn(name="FailingSteps")
class FailingSteps:
    @workflow.run
    async def run(self, exit_code: int) -> dict[str, str]:
        outcome = {}
        try:
            await run_job(_sh("fails", f"exit {exit_code}"))
            outcome["run_job"] = "succeeded"
        except JobFailedError as err:
            outcome["run_job"] = f"{err.view.state.value}: {err.reasons[0]}"
        handle = await start_job(_sh("sleeps", "sleep 300"))
        await handle.kill()
        outcome["killed"] = (await handle.result(check=False)).state.value
        return outcome
"""


def sh(name: str, script: str, **fields: object) -> BatchJob:
    """A tiny job running ``sh -c script`` (a local process: the process driver)."""
    return BatchJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", script]),
        resources=SMALL,
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def proc_cluster(cluster_factory: Callable[[], Cluster], tmp_path: Path) -> Cluster:
    """A worker that also runs the pipeline example and FLOWS, and a process-driver agent."""
    flows = tmp_path / f"outcome_flows_{secrets.token_hex(4)}.py"
    flows.write_text(FLOWS)
    cluster = cluster_factory()
    cluster.start("worker", "worker", "--workflows", PIPELINE, "--workflows", str(flows))
    cluster.start_agent("proc", "--driver", "process", "--cpu", "4", "--memory", "4Gi")
    return cluster


async def status_of(client: TitusClient, workflow_id: str) -> WorkflowExecutionStatus | None:
    return (await client.temporal.get_workflow_handle(workflow_id).describe()).status


async def failure_of(client: TitusClient, workflow_id: str) -> ApplicationError:
    """The failure a (failed) workflow ended with."""
    with pytest.raises(WorkflowFailureError) as caught:
        await client.temporal.get_workflow_handle(workflow_id).result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


# --- item 3: invalid workflow input ---------------------------------------------------


async def test_start_with_invalid_input_exits_2_and_starts_nothing(proc_cluster: Cluster) -> None:
    workflow_id = f"pipeline-bad-{secrets.token_hex(3)}"
    result = await asyncio.to_thread(
        proc_cluster.cli,
        *("start", f"{PIPELINE}:Pipeline", "--input", '{"chunks": 0}'),
        *("--id", workflow_id, "--wait"),
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "--input: chunks: must be greater than or equal to 1 (got 0)" in result.stderr
    client = await proc_cluster.client()
    with pytest.raises(RPCError) as caught:
        await client.temporal.get_workflow_handle(workflow_id).describe()
    assert caught.value.status is RPCStatusCode.NOT_FOUND


async def test_workflow_started_with_undecodable_input_fails_with_the_error(
    proc_cluster: Cluster,
) -> None:
    client = await proc_cluster.client()
    workflow_id = f"pipeline-raw-{secrets.token_hex(3)}"
    handle = await client.temporal.start_workflow(  # past the CLI's check, as any client can
        "Pipeline", {"chunks": 0}, id=workflow_id, task_queue=proc_cluster.control_queue
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), 60)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidPayload", cause
    assert cause.non_retryable
    assert "as PipelineInput: chunks: must be greater than or equal to 1 (got 0)" in cause.message
    assert await status_of(client, workflow_id) is WorkflowExecutionStatus.FAILED


# --- item 4: a failed job's workflow fails --------------------------------------------


async def test_job_workflow_status_tells_failed_and_killed_jobs_from_succeeded(
    proc_cluster: Cluster,
) -> None:
    client = await proc_cluster.client()
    succeeded = await client.submit(sh("ok", "true"))
    failed = await client.submit(
        sh("bad", '[ "$TITUS_TASK_INDEX" = 1 ] && exit 3; true', instances=2)
    )
    killed = await client.submit(sh("stop", "sleep 300"))

    async def started() -> bool:
        return (await client.describe(killed)).tasks[0].state is TaskState.STARTED

    await eventually(started, 60, "the task to kill to start")
    await client.kill(killed)

    expected = {
        succeeded: (JobState.SUCCEEDED, WorkflowExecutionStatus.COMPLETED, None),
        failed: (JobState.FAILED, WorkflowExecutionStatus.FAILED, "JobFailed"),
        killed: (JobState.KILLED, WorkflowExecutionStatus.FAILED, "JobKilled"),
    }
    # TitusClient.wait: the whole view (every job ends before anything is asserted).
    views = {job_id: await proc_cluster.wait_for(job_id) for job_id in expected}
    for job_id, (state, status, failure_type) in expected.items():
        view = views[job_id]
        assert view.state is state, view
        assert await status_of(client, job_id) is status
        assert await client.describe(job_id) == view
        described = await asyncio.to_thread(
            proc_cluster.cli, "job", "describe", job_id, "-o", "json"
        )
        assert described.returncode == 0, described.stderr
        assert json.loads(described.stdout)["state"] == state.value
        if failure_type is not None:
            failure = await failure_of(client, job_id)
            assert failure.type == failure_type and failure.non_retryable
            assert failure.message.startswith(f"job {job_id} ({view.name}) {state.value}")
    assert [t.reason for t in (await client.describe(failed)).tasks] == [
        FinishReason.NORMAL,
        FinishReason.FAILED,
    ]
    # The query the docs give for failed jobs finds it (visibility is eventually consistent).
    query = f"TitusJobState = 'Failed' AND ExecutionStatus = 'Failed' AND TitusJobId = '{failed}'"

    async def listed() -> bool:
        return [w.id async for w in client.temporal.list_workflows(query)] == [failed]

    await eventually(listed, 30, f"{failed} in `temporal workflow list --query {query!r}`")


async def test_run_job_raises_job_failed_error_and_a_killed_child_reads_killed(
    proc_cluster: Cluster,
) -> None:
    client = await proc_cluster.client()
    workflow_id = f"steps-{secrets.token_hex(3)}"
    result = await client.temporal.execute_workflow(
        "FailingSteps",
        3,
        id=workflow_id,
        task_queue=proc_cluster.control_queue,
        result_type=dict[str, str],
    )
    expected = {"run_job": "Failed: failed: exited with code 3", "killed": "Killed"}
    assert result == expected, proc_cluster.logs()
    assert await status_of(client, f"{workflow_id}-fails-1") is WorkflowExecutionStatus.FAILED
    assert await status_of(client, f"{workflow_id}-sleeps-1") is WorkflowExecutionStatus.FAILED
    assert (await client.describe(f"{workflow_id}-sleeps-1")).state is JobState.KILLED


# --- item 5: a disruption budget of 0 --------------------------------------------------


async def test_zero_disruption_budget_holds_a_kill_until_its_replacement_is_healthy(
    proc_cluster: Cluster,
) -> None:
    client = await proc_cluster.client()
    job_id = await client.submit(
        ServiceJob(
            name="zero",
            container=Container(image="busybox:latest", command=["sleep", "600"]),
            resources=SMALL,
            capacity=Capacity(min=0, desired=2, max=4),
            disruption_budget=DisruptionBudget(max_unavailable=0),
        )
    )
    try:
        victim = (await client.wait_healthy(job_id, timeout=60)).live_tasks()[0]
        answer = await client.kill_task(victim.id)
        assert answer.startswith("waiting for the disruption budget"), answer
        healthy: list[int] = []

        async def replaced() -> bool:
            view = await client.describe(job_id)
            healthy.append(view.healthy_tasks())
            gone = all(t.id != victim.id for t in view.live_tasks())
            return gone and view.healthy_tasks() == 2

        await eventually(replaced, 60, f"{victim.id} to be replaced, then killed")
        assert min(healthy) >= 2, healthy  # never fewer than desired healthy
        view = await client.describe(job_id)
        killed = next(t for t in view.tasks if t.id == victim.id)
        assert killed.reason is FinishReason.KILLED, killed
        (replacement,) = [t for t in view.live_tasks() if t.index >= 2]
        started, ended = replacement.attempts[0].started_at, killed.attempts[0].finished_at
        assert started is not None and ended is not None and started < ended
        # `task kill --force` still goes through at once.
        forced = await asyncio.to_thread(
            proc_cluster.cli, "task", "kill", replacement.id, "--force"
        )
        assert forced.returncode == 0, forced.stderr
    finally:
        await client.kill(job_id)
        view = await proc_cluster.wait_for(job_id)
    assert view.state is JobState.KILLED and view.live_tasks() == []
    assert await status_of(client, job_id) is WorkflowExecutionStatus.FAILED
    assert (await failure_of(client, job_id)).type == "JobKilled"
