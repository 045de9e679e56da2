"""Unit-testing a user workflow: examples/pipeline.py with a fake job runner.

This is the pattern docs/workflows-as-code.md describes: the user's workflow is
the real one; the ``BatchJob`` child workflow it starts is replaced by a fake
registered under the same name, which "runs" a job by returning a finished view
(with the outputs the real containers would write). The time-skipping test
server needs no Docker, no agent and no control worker.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import JsonValue
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from titus_cluster import max_overlap, time_skipping_server

from titus_flow.activities.services import ServiceActivities
from titus_flow.contracts import BatchJobInput
from titus_flow.contracts.load_balancers import (
    LoadBalancersView,
    TargetGroupView,
    TargetState,
    TargetView,
)
from titus_flow.errors import UserError
from titus_flow.flow import (
    fake_job_view,
    load_balancer_targets,
    pause_autoscaling,
    put_metric,
    register_search_attributes,
    resume_autoscaling,
)
from titus_flow.userflows import find_workflow
from titus_flow.views import JobView
from titus_flow.worker import SANDBOX

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLES = Path(__file__).parents[2] / "examples"
QUEUE = "flow-ts"


async def _environment() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    await register_search_attributes(env.client)  # jobs carry them; unknown ones stall starts
    return env


@workflow.defn(name="BatchJob")
class FakeBatchJob:
    """Stands in for titus-flow's BatchJob workflow: answers from the job's env."""

    @workflow.run
    async def run(self, request: BatchJobInput) -> JobView:
        job = request.job
        env = job.container.env
        started = workflow.now()
        await workflow.sleep(timedelta(seconds=float(env.get("ENCODE_SECONDS", "1"))))
        if job.name == "split":
            count = int(env["CHUNKS"])
            output: JsonValue = [f"chunk-{i}" for i in range(1, count + 1)]
        elif job.name.startswith("encode-"):
            if workflow.info().workflow_id.endswith("-fail-encode-chunk-3-1"):
                return fake_job_view(request, workflow.info().workflow_id, [None], failed=True)
            output = {
                "chunk": env["CHUNK"],
                "encoded": env["CHUNK"].upper(),
                "window": [started.timestamp(), workflow.now().timestamp()],
            }
        else:
            output = {"merged": env["PARTS"], "count": int(env["COUNT"])}
        return fake_job_view(request, workflow.info().workflow_id, [output])


async def test_pipeline_with_fake_jobs_fans_out_within_the_bound_and_merges_all() -> None:
    pipeline = find_workflow(f"{EXAMPLES / 'pipeline.py'}:Pipeline")
    env = await _environment()
    async with (
        env,
        Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[pipeline, FakeBatchJob],
            workflow_runner=SANDBOX,
        ),
    ):
        result = await env.client.execute_workflow(
            "Pipeline",
            {"chunks": 5, "max_concurrent": 2, "encode_seconds": 60},
            id="pipeline-ts-1",
            task_queue=QUEUE,
        )
        # Child ids: <parent id>-<job name>-<n>, readable and deterministic.
        assert result["job_ids"] == [
            "pipeline-ts-1-split-1",
            *(f"pipeline-ts-1-encode-chunk-{i}-1" for i in range(1, 6)),
            "pipeline-ts-1-merge-1",
        ]
        assert result["chunks"] == [f"chunk-{i}" for i in range(1, 6)]
        assert result["merged"]["count"] == 5
        assert (
            result["merged"]["merged"] == '["CHUNK-1", "CHUNK-2", "CHUNK-3", "CHUNK-4", "CHUNK-5"]'
        )
        # The bound, on the fake jobs' (skipped) clock: 5 jobs of 60 s, 2 at once.
        windows = [part["window"] for part in result["encoded"]]
        assert max_overlap(windows) == 2
        assert max(end for _, end in windows) - min(start for start, _ in windows) >= 180


async def test_failed_encode_fails_the_pipeline_with_job_failed_error() -> None:
    pipeline = find_workflow(f"{EXAMPLES / 'pipeline.py'}:Pipeline")
    env = await _environment()
    async with (
        env,
        Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[pipeline, FakeBatchJob],
            workflow_runner=SANDBOX,
        ),
    ):
        with pytest.raises(WorkflowFailureError) as caught:
            await env.client.execute_workflow(
                "Pipeline",
                {"chunks": 4, "max_concurrent": 4, "encode_seconds": 1},
                id="pipeline-ts-fail",
                task_queue=QUEUE,
            )
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "JobFailed", cause
    assert "1 of 4 jobs failed; first: job pipeline-ts-fail-encode-chunk-3-1" in cause.message
    assert "task 0: failed" in cause.message


@workflow.defn
class ServiceControls:
    """A user workflow driving a running service job: the flow equivalents of the CLI's."""

    @workflow.run
    async def run(self, job_id: str) -> dict[str, Any]:
        await pause_autoscaling(job_id)
        metric = await put_metric(job_id, "queue_depth", 42)
        view = await load_balancer_targets(job_id)
        await resume_autoscaling(job_id)
        try:
            await put_metric(job_id, "unread", 1)
            refused = ""
        except ActivityError as err:  # refused at once, not retried
            assert isinstance(err.cause, ApplicationError), err.cause
            refused = f"{err.cause.type}: {err.cause.message}"
        return {"metric": metric, "view": view.model_dump(mode="json"), "refused": refused}


class FakeTitus:
    """The client calls the service activities make; records them (a job's answers)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def set_autoscaling_paused(self, job_id: str, paused: bool) -> bool:
        self.calls.append(("paused", job_id, paused))
        return paused

    async def put_metric(self, job_id: str, name: str, value: float, source: str) -> str:
        self.calls.append(("metric", job_id, name, value, source))
        if name == "unread":
            raise UserError(f"no policy of job {job_id} reads custom:unread")
        return f"custom:{name}"

    async def load_balancers(self, job_id: str) -> LoadBalancersView:
        self.calls.append(("load_balancers", job_id))
        target = TargetView(
            task_id="web-0", target="127.0.0.1", port=8080, state=TargetState.REGISTERED
        )
        group = TargetGroupView(
            target_group="local:web", drain=timedelta(seconds=2), targets=[target]
        )
        return LoadBalancersView(groups=[group])


async def test_flow_controls_of_a_service_go_through_the_service_activities() -> None:
    titus = FakeTitus()
    activities = ServiceActivities(titus)  # type: ignore[arg-type]
    env = await _environment()
    async with (
        env,
        Worker(
            env.client,
            task_queue=QUEUE,
            workflows=[ServiceControls],
            activities=activities.all(),
            workflow_runner=SANDBOX,
        ),
    ):
        result = await env.client.execute_workflow(
            ServiceControls.run, "web", id="controls-ts", task_queue=QUEUE
        )
    source = "workflow:controls-ts"
    assert titus.calls == [
        ("paused", "web", True),
        ("metric", "web", "queue_depth", 42, source),
        ("load_balancers", "web"),
        ("paused", "web", False),
        ("metric", "web", "unread", 1, source),  # once: InvalidRequest is not retried
    ]
    assert result["metric"] == "custom:queue_depth"
    [group] = result["view"]["groups"]
    assert group["target_group"] == "local:web" and group["targets"][0]["state"] == "registered"
    assert result["refused"] == "InvalidRequest: no policy of job web reads custom:unread"
