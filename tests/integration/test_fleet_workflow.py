"""The fleet workflow on the real dev server, with EC2 on moto_server.

The real scheduler workflow (its ``demand`` query, ``drain_agent`` and
``remove_agent`` signals) runs with the fleet workflow in a worker of the test
process. A "boot hook" stands in for the user data: for
each instance moto reports, it registers an agent with the instance's id,
type and zone, as ``titus-flow agent`` would.
"""

# ruff: noqa: F811  (the moto fixtures are imported from test_fleet_moto, then requested)

from __future__ import annotations

import asyncio
import secrets

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from test_fleet_moto import Moto, aws_env, moto  # noqa: F401  (fixtures)
from titus_cluster import eventually

from titus_flow.activities.control import ControlActivities
from titus_flow.activities.fleet import FleetActivities
from titus_flow.cluster import agent_task_queue, scheduler_workflow_id
from titus_flow.contracts import (
    AgentInfo,
    PlacementItem,
    PlacementRequest,
    PlacementUpdate,
    ReleaseRequest,
)
from titus_flow.fleet.planner import capacity
from titus_flow.fleet.spec import FleetSpec
from titus_flow.ledger import LedgerState
from titus_flow.spec import Resources
from titus_flow.workflows.fleet import FleetWorkflow
from titus_flow.workflows.fleet_state import Bounds, FleetInput, FleetStatus
from titus_flow.workflows.scheduler import SchedulerWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


@workflow.defn(name="FleetTestRequester")
class Requester:
    """A job stand-in: asks for capacity, gives it back once all is placed."""

    def __init__(self) -> None:
        self._placed: set[str] = set()

    @workflow.run
    async def run(self, items: list[PlacementItem]) -> list[str]:
        scheduler = workflow.get_external_workflow_handle(
            scheduler_workflow_id(workflow.info().task_queue)
        )
        me = workflow.info().workflow_id
        await scheduler.signal("request_placement", PlacementRequest(requester=me, items=items))
        await workflow.wait_condition(lambda: len(self._placed) == len(items))
        await scheduler.signal(
            "release",
            ReleaseRequest(requester=me, keys=[p.split("/")[1] for p in sorted(self._placed)]),
        )
        return sorted(self._placed)

    @workflow.signal(name="placement_update")
    def placement_update(self, update: PlacementUpdate) -> None:
        self._placed |= {p.agent_id + "/" + p.key for p in update.placed}


async def test_fleet_launches_for_demand_registers_scales_in_and_deletes(
    moto: Moto, dev_server: str
) -> None:
    queue = f"tf{secrets.token_hex(3)}"
    client = await Client.connect(dev_server, data_converter=pydantic_data_converter)
    spec: FleetSpec = moto.fleet(
        f"wf{secrets.token_hex(3)}",
        instance_types=["m5.large", "m5.xlarge"],
        max=3,
        idle_timeout="3s",
        poll_interval="1s",
        temporal={"address": dev_server, "control_task_queue": queue},
    )
    scheduler_id = scheduler_workflow_id(queue)
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[SchedulerWorkflow, FleetWorkflow, Requester],
        activities=[*FleetActivities(client).all(), *ControlActivities(client).all()],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    async with worker:
        scheduler = await client.start_workflow(
            SchedulerWorkflow.run,
            LedgerState(agent_silence_seconds=10**9),
            id=scheduler_id,
            task_queue=queue,
        )
        # Demand nobody can place yet: three 1.5-core tasks.
        job = await client.start_workflow(
            Requester.run,
            [
                PlacementItem(key=f"t{i}", job_id="j", resources=Resources(cpu=1.5, memory=512))
                for i in range(3)
            ],
            id=f"{queue}-job",
            task_queue=queue,
        )
        fleet = await client.start_workflow(
            FleetWorkflow.run,
            FleetInput(spec=spec, scheduler_signals=True),
            id=f"{queue}-fleet-{spec.name}",
            task_queue=queue,
        )

        async def status() -> FleetStatus:
            result: FleetStatus = await fleet.query("status", result_type=FleetStatus)
            return result

        async def launched() -> bool:
            return len(moto.instances(spec.name)) == 3

        await eventually(launched, 30, "three m5.large launched for three 1.5-core tasks")
        assert {i["InstanceType"] for i in moto.instances(spec.name)} == {"m5.large"}
        assert len({i["Placement"]["AvailabilityZone"] for i in moto.instances(spec.name)}) == 2
        # Boot hook: each instance's agent registers (as the user data's agent would).
        for raw in moto.instances(spec.name):
            iid, itype = raw["InstanceId"], raw["InstanceType"]
            offered = capacity(spec, spec.instance_types[0])
            await scheduler.signal(
                "register_agent",
                AgentInfo(
                    agent_id=iid,
                    task_queue=agent_task_queue(iid),
                    resources=Resources(cpu=offered.millicores / 1000, memory=offered.memory_mib),
                    attributes={
                        "zone": raw["Placement"]["AvailabilityZone"],
                        "instance_type": itype,
                    },
                ),
            )

        async def registered() -> bool:
            return all(i.agent_id for i in (await status()).instances)

        await eventually(registered, 20, "agents seen by the fleet")
        placed = await asyncio.wait_for(job.result(), 30)
        assert len({p.split("/")[0] for p in placed}) == 3  # one 1.5-core task per instance

        # The requester is gone, so the placements are released: the agents go idle and,
        # after idle_timeout, are scaled in (min 0).
        async def scaled_in() -> bool:
            return moto.instances(spec.name) == []

        await eventually(scaled_in, 40, "idle instances terminated")

        async def removed() -> bool:  # from the ledger, after termination
            return await scheduler.query("agents") == []

        await eventually(removed, 10, "agents removed from the scheduler")

        # scale: min 1 brings one back; invalid bounds are rejected by the validator.
        result = await fleet.execute_update("scale", Bounds(min=1, max=2), result_type=FleetStatus)
        assert (result.min, result.max) == (1, 2)
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await fleet.execute_update("scale", Bounds(min=3, max=2))
        assert "min <= max" in str(rejected.value.cause)

        async def one() -> bool:
            return len(moto.instances(spec.name)) == 1

        await eventually(one, 30, "min 1 kept")
        events = (await status()).events
        assert any("launch #" in e for e in events), events

        await fleet.signal("delete")
        final: FleetStatus = await asyncio.wait_for(fleet.result(), 60)
        assert final.deleting and final.instances == []
        assert moto.instances(spec.name) == []
        await scheduler.terminate()
