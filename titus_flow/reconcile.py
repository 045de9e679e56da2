"""Which containers on an agent are still wanted by their jobs (orphan detection).

A container is current while its job's workflow runs and holds its task, not
finished, at the container's attempt. Anything else (the job ended, was
terminated or cancelled; the task finished or moved to a later attempt) is an
orphan: nobody supervises it, so the agent stops and removes it.

Only a definite answer makes an orphan. When a job cannot be asked right now
(a worker restarting, a query that fails) its containers stay; the next
reconcile, or the job's own supervise activity, settles their fate.

Jobs are asked once per reconcile, not once per container: the containers are
grouped by job, and a partitioned job's root is asked for its partition list,
then only the partitions that hold one of the containers' tasks are queried.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from titus_flow.client.job_views import partitions_of, view_of
from titus_flow.lifecycle import TaskState
from titus_flow.runtime.base import ManagedContainer
from titus_flow.views import JobView
from titus_flow.workflows.batch_partitions import partition_holding

RECHECK_SECONDS = 2.0  # between the two looks that find a job no longer running

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """Whether one container is still wanted, and if not, why (for the agent log)."""

    container: ManagedContainer
    current: bool
    reason: str = ""


async def _running(client: Client, workflow_id: str) -> bool | None:
    """Whether ``workflow_id``'s latest run is running; None if the server cannot say now."""
    try:
        status = (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        log.warning("cannot tell if %s runs (%s)", workflow_id, err.message)
        return None
    return status == WorkflowExecutionStatus.RUNNING


async def jobs_running(client: Client, job_ids: Iterable[str]) -> dict[str, bool | None]:
    """Whether each job's workflow runs; None for a job the server cannot answer for now."""
    running = {job_id: await _running(client, job_id) for job_id in job_ids}
    # "Not running" removes containers, so it must be said twice, a moment apart:
    # a server just restarted on its database once answered it for a running
    # service (the chaos suite), and its containers were removed. One wait a round.
    gone = [job_id for job_id, answer in running.items() if answer is False]
    if gone:
        await asyncio.sleep(RECHECK_SECONDS)
        running.update({job_id: await _running(client, job_id) for job_id in gone})
    return running


async def _task_views(
    client: Client, job_id: str, indexes: set[int]
) -> tuple[dict[str, tuple[TaskState, int | None]], bool] | None:
    """(state, attempt) of the job's tasks at ``indexes``, by task id; None if unknown now.

    With it, whether the views were complete: only then is a task absent from
    them not held by the job (a large view is bounded and may leave rows out).
    """
    try:
        root = await view_of(client, job_id)
        views: list[JobView] = [root]
        if root.partitions:
            partitions = partitions_of(root)
            holding = (partition_holding(partitions, i) for i in indexes)
            wanted = {p.id for p in holding if p is not None}
            views = [await view_of(client, p.id) for p in partitions if p.id in wanted]
    except RPCError as err:
        log.warning("cannot read the tasks of job %s (%s)", job_id, err.message)
        return None
    complete = all(v.total_tasks is None or v.total_tasks <= len(v.tasks) for v in views)
    return {t.id: (t.state, t.attempt) for view in views for t in view.tasks}, complete


def _index(container: ManagedContainer) -> int:
    tail = container.task_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


async def judge(client: Client, containers: Iterable[ManagedContainer]) -> list[Verdict]:
    """A verdict for each container, asking each of their jobs once."""
    by_job: dict[str, list[ManagedContainer]] = defaultdict(list)
    for container in containers:
        by_job[container.job_id].append(container)
    running = await jobs_running(client, by_job)
    verdicts: list[Verdict] = []
    for job_id, held in by_job.items():
        if running[job_id] is None:
            verdicts += [Verdict(c, True) for c in held]
            continue
        if not running[job_id]:
            verdicts += [Verdict(c, False, f"job {job_id} is no longer running") for c in held]
            continue
        known = await _task_views(client, job_id, {_index(c) for c in held})
        if known is None:
            verdicts += [Verdict(c, True) for c in held]
            continue
        tasks, complete = known
        verdicts += [
            _judge_one(c, tasks.get(c.task_id))
            if c.task_id in tasks or complete
            else Verdict(c, True)
            for c in held
        ]
    return verdicts


TOGETHER_SECONDS = 1.0
"""How long :class:`JudgedTogether` gathers containers of one job before asking it."""


class JudgedTogether:
    """Verdicts on single containers, asking each job once for those asked about together.

    When a service continues as new, every supervise activity of its previous
    run learns at once that the server forgot it, and each asks whether its
    container is still wanted. Asked one by one, 1,000 tasks made 1,000 queries
    to one busy workflow: they expired, the activities held their slots, and
    the new run's supervise activities timed out waiting for an agent
    (``bench/scale.py``, service 0 -> 1,000). Gathered for
    :data:`TOGETHER_SECONDS`, they make one :func:`judge` call per job.
    """

    def __init__(self, window: float = TOGETHER_SECONDS) -> None:
        self.window = window
        self._gathering: dict[str, list[tuple[ManagedContainer, asyncio.Future[Verdict]]]] = {}
        self._asking: set[asyncio.Task[None]] = set()  # kept referenced until done

    async def verdict(self, client: Client, container: ManagedContainer) -> Verdict:
        """The verdict on ``container``; raises what :func:`judge` raised."""
        waiting: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        gathering = self._gathering.get(container.job_id)
        if gathering is None:
            gathering = self._gathering[container.job_id] = []
            asking = asyncio.create_task(self._ask(client, container.job_id))
            self._asking.add(asking)
            asking.add_done_callback(self._asking.discard)
        gathering.append((container, waiting))
        return await asyncio.shield(waiting)  # one caller's cancel does not end the others'

    async def _ask(self, client: Client, job_id: str) -> None:
        await asyncio.sleep(self.window)
        gathered = self._gathering.pop(job_id)
        try:
            verdicts = await judge(client, [container for container, _ in gathered])
        except asyncio.CancelledError:
            for _, waiting in gathered:
                waiting.cancel()
            raise
        except Exception as err:
            for _, waiting in gathered:
                if not waiting.done():
                    waiting.set_exception(err)
            return
        for (_, waiting), verdict in zip(gathered, verdicts, strict=True):
            if not waiting.done():
                waiting.set_result(verdict)


def _judge_one(container: ManagedContainer, task: tuple[TaskState, int | None] | None) -> Verdict:
    if task is None:
        return Verdict(container, False, f"job {container.job_id} has no task {container.task_id}")
    state, attempt = task
    if state is TaskState.FINISHED:
        return Verdict(container, False, f"task {container.task_id} has finished")
    if attempt != container.attempt:
        return Verdict(
            container,
            False,
            f"task {container.task_id} runs attempt {attempt}, not {container.attempt}",
        )
    return Verdict(container, True)
