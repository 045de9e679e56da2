"""How runs end, as Temporal sees them: real dev server, worker and process-driver agent.

- A workflow started with input it cannot decode fails at once (or the CLI
  refuses it, exit 2, before starting anything), never retrying forever.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from titus_cluster import Cluster

from titus_flow.client import TitusClient

pytestmark = pytest.mark.asyncio(loop_scope="session")

PIPELINE = str(Path(__file__).parents[2] / "examples" / "pipeline.py")


@pytest.fixture
def proc_cluster(cluster_factory: Callable[[], Cluster]) -> Cluster:
    """A worker that also runs the pipeline example, and a process-driver agent."""
    cluster = cluster_factory()
    cluster.start("worker", "worker", "--workflows", PIPELINE)
    cluster.start_agent("proc", "--driver", "process", "--cpu", "4", "--memory", "4Gi")
    return cluster


async def status_of(client: TitusClient, workflow_id: str) -> WorkflowExecutionStatus | None:
    return (await client.temporal.get_workflow_handle(workflow_id).describe()).status


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
