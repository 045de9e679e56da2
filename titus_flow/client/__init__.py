"""The Python client: submit, inspect, kill jobs and read their logs.

Example::

    import asyncio
    from titus_flow import BatchJob, Container
    from titus_flow.client import TitusClient

    async def main() -> None:
        client = await TitusClient.connect()
        job_id = await client.submit(
            BatchJob(name="hello", container=Container(image="busybox", command="echo hi"))
        )
        view = await client.wait(job_id)
        print(view.state)

    asyncio.run(main())

:class:`TitusClient` is composed of one part per concept: jobs (:mod:`.jobs`,
with views assembled across partitions in :mod:`.job_views`), service jobs
(:mod:`.services`) with their autoscaling (:mod:`.autoscaling`) and load
balancer targets (:mod:`.load_balancers`), the scheduler's agents and capacity
groups (:mod:`.agents`), task logs (:mod:`.logs`), job events (:mod:`.events`),
users' workflows, DAGs and schedules (:mod:`.flows`), over a shared base
(:mod:`.base`) and the connection (:mod:`.connection`).
"""

from titus_flow.client.agents import ensure_scheduler
from titus_flow.client.autoscaling import AutoscalingClient
from titus_flow.client.base import JobNotFoundError, job_id_of_task, new_job_id, update_id
from titus_flow.client.connection import connect
from titus_flow.client.events import EventsClient
from titus_flow.client.flows import FlowsClient
from titus_flow.client.jobs import job_state
from titus_flow.client.load_balancers import LoadBalancersClient
from titus_flow.client.logs import LogsClient
from titus_flow.client.services import ServicesClient


class TitusClient(
    ServicesClient, AutoscalingClient, LoadBalancersClient, LogsClient, FlowsClient, EventsClient
):
    """Submit and manage jobs on a titus-flow cluster."""


__all__ = [
    "JobNotFoundError",
    "TitusClient",
    "connect",
    "ensure_scheduler",
    "job_id_of_task",
    "job_state",
    "new_job_id",
    "update_id",
]
