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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, overload

from pydantic_core import to_jsonable_python
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from titus_flow import visibility
from titus_flow.auth import api_key, tls_config
from titus_flow.codec import codec_for
from titus_flow.config import Settings, load_settings
from titus_flow.contracts import (
    AgentInfo,
    AgentView,
    BatchJobInput,
    CanaryRequest,
    CapacityGroupView,
    KillTaskRequest,
    LogsChunk,
    LogsInput,
    PutCapacityGroup,
    ScaleRequest,
    ServiceJobInput,
    agent_task_queue,
)
from titus_flow.converter import client_data_converter
from titus_flow.errors import (
    TLS_HANDSHAKE,
    ClusterError,
    ServerUnreachableError,
    UserError,
    connection_reason,
)
from titus_flow.ids import check_id, split_task_id
from titus_flow.isolation import refuse_host_network
from titus_flow.lifecycle import JobState
from titus_flow.outcomes import view_of_failure
from titus_flow.refs import signal_name, update_name
from titus_flow.scheduler.queries import AGENTS_PAGE, AgentQuery, AgentTasks, AgentTasksQuery
from titus_flow.spec import BatchJob, Capacity, CapacityGroup, ServiceJob
from titus_flow.views import (
    JobProgress,
    JobView,
    PartitionSummary,
    ServiceStatus,
    TaskPage,
    TaskQuery,
    TaskView,
    page_tasks,
)
from titus_flow.workflows.batch import PARTITION_SIZE, BatchJobWorkflow
from titus_flow.workflows.common import scheduler_workflow_id
from titus_flow.workflows.logs import FetchLogsInput, FetchLogsWorkflow
from titus_flow.workflows.scheduler import SchedulerWorkflow
from titus_flow.workflows.service import ServiceJobWorkflow

T = TypeVar("T")
A = TypeVar("A")

FOLLOW_WAIT_SECONDS = 5.0
"""How long one read of a followed attempt waits on the agent for new output."""
FOLLOW_POLL_SECONDS = 1.0
"""How often a follow looks for the first attempt of a task that has not started."""
CONNECT_TIMEOUT_SECONDS = 10.0
"""How long connecting to Temporal may take (TCP, TLS and its first answer) before giving up."""


class JobNotFoundError(UserError):
    """No job (or task) with that id."""


@contextlib.contextmanager
def _not_found_as_no_job(message: str) -> Iterator[None]:
    """Raise JobNotFoundError(``message``) when Temporal answers that the workflow is not there.

    Any other RPCError (a server that cannot be reached, a call that timed out)
    is raised as is: it says nothing about the job.
    """
    try:
        yield
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
        raise JobNotFoundError(f"{message}: {err.message}") from err


async def _final_view(handle: WorkflowHandle[Any, JobView]) -> JobView:
    """Wait for a job (or partition) workflow to end; the job's final view.

    A job that did not succeed fails its workflow with the view in the failure
    (:mod:`titus_flow.outcomes`); any other failure is raised as is.
    """
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        view = view_of_failure(err.cause)
        if view is None:
            raise
        return view


def batch_handle(temporal: Client, workflow_id: str) -> WorkflowHandle[BatchJobWorkflow, JobView]:
    """A handle on a batch job's root or partition workflow, typed for its queries and signals.

    Declared rather than inferred: without the declared type, mypy (cache-less
    run) can infer ``get_workflow_handle_for(BatchJobWorkflow.run, ...)`` as
    ``WorkflowHandle[Never, Never]`` and reject the reference.
    """
    return temporal.get_workflow_handle_for(BatchJobWorkflow.run, workflow_id)


def scheduler_handle(
    temporal: Client, settings: Settings
) -> WorkflowHandle[SchedulerWorkflow, None]:
    """A handle on the cluster's scheduler workflow (see :func:`batch_handle` for the typing)."""
    return temporal.get_workflow_handle_for(
        SchedulerWorkflow.run, scheduler_workflow_id(settings.control_task_queue)
    )


async def _view_of(temporal: Client, workflow_id: str) -> JobView:
    """The view a job (or partition) workflow holds.

    Its final view once ended (completed, or failed with the view), else what
    its describe query answers.
    """
    handle = batch_handle(temporal, workflow_id)
    status = (await handle.describe()).status
    if status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        with contextlib.suppress(WorkflowFailureError):  # a failure without a view
            return await _final_view(handle)
    return await handle.query(BatchJobWorkflow.describe)


def _partition_summaries(root: JobView) -> list[PartitionSummary]:
    """The root's partitions (a root started before summaries: ids and index ranges only)."""
    if root.partition_views:
        return root.partition_views
    return [
        PartitionSummary(id=p, first_index=n * PARTITION_SIZE, count=PARTITION_SIZE)
        for n, p in enumerate(root.partitions)
    ]


async def _counts_of(temporal: Client, summary: PartitionSummary) -> dict[str, int]:
    """A partition's tasks per state: kept by the root once it ended, else its progress query."""
    if summary.state.is_final and summary.counts:
        return summary.counts
    return (await _view_of(temporal, summary.id)).counts()


async def _partition_page(
    temporal: Client, summary: PartitionSummary, query: TaskQuery
) -> TaskPage:
    """One page of a partition's tasks.

    An ended partition's final view (read from its close event) answers when
    it holds every task ``query`` selects; else the partition's ``tasks``
    query does (for an ended one, the worker replays its history: the slow path).
    """
    handle = batch_handle(temporal, summary.id)
    if summary.state.is_final:
        with contextlib.suppress(WorkflowFailureError):
            view = await _final_view(handle)
            matching = [t for t in view.tasks if query.matches(t)]
            ranged = query.first is not None or query.last is not None
            if view.total_tasks is None or (
                not ranged and len(matching) == query.count(view.counts())
            ):
                return page_tasks(view.tasks, query)
    return await handle.query(BatchJobWorkflow.tasks, query)


def _overlaps(summary: PartitionSummary, query: TaskQuery) -> tuple[bool, bool]:
    """Whether the partition's index range meets ``query``'s, and lies wholly inside it."""
    low, high = summary.first_index, summary.first_index + summary.count - 1
    first = -1 if query.first is None else query.first
    last = high if query.last is None else query.last
    return low <= last and high >= first, first <= low and high <= last


async def task_page(
    temporal: Client, view: JobView, query: TaskQuery
) -> tuple[TaskPage, dict[str, int]]:
    """The page of job ``view``'s tasks ``query`` asks for, and the job's counts by state.

    A partitioned job's page is built across its partitions, failed tasks
    first: each partition's counts say how many of its tasks match, so only
    the partitions that hold rows of the page are asked for rows. The work is
    bounded by the page, not by the size of the job.
    """
    if not view.partitions:
        if view.total_tasks is None:
            return page_tasks(view.tasks, query), view.counts()
        page = await batch_handle(temporal, view.id).query(BatchJobWorkflow.tasks, query)
        return page, view.counts()
    summaries = _partition_summaries(view)
    all_counts = await asyncio.gather(*(_counts_of(temporal, s) for s in summaries))
    counts: dict[str, int] = {}
    for part in all_counts:
        for key, n in part.items():
            counts[key] = counts.get(key, 0) + n
    rows: list[TaskView] = []
    total, offset, limit = 0, query.offset, query.limit
    # Failed tasks of every partition come before the others of any.
    passes = [query.failed] if query.failed is not None else [True, False]
    for failed in passes:
        step = query.model_copy(update={"failed": failed})
        for summary, part in zip(summaries, all_counts, strict=True):
            meets, inside = _overlaps(summary, step)
            matching = step.count(part)
            if not meets or matching == 0:
                continue
            if inside and (offset >= matching or limit == 0):
                total += matching
                offset -= min(offset, matching)
                continue
            page = await _partition_page(
                temporal,
                summary,
                step.model_copy(update={"offset": offset, "limit": max(limit, 1)}),
            )
            total += page.total
            taken = page.tasks[:limit]
            rows += taken
            if len(taken) < min(limit, page.total - offset):
                limit = 0  # the page reached its byte budget: the rest waits for the next page
            else:
                limit -= len(taken)
            offset = max(0, offset - page.total)
    return TaskPage(tasks=rows, total=total), counts


async def describe_job(temporal: Client, job_id: str, query: TaskQuery | None = None) -> JobView:
    """Job ``job_id``'s view with one page of its tasks; raises RPCError if absent.

    Without ``query``: a job whose tasks all fit in its view as it is (a small
    job: every task, by index); a partitioned job with the first page of its
    tasks, failed first, and its counts by state.
    """
    view = await _view_of(temporal, job_id)
    if query is None and not view.partitions:
        return view
    page, counts = await task_page(temporal, view, query or TaskQuery())
    total = sum(counts.values()) if view.partitions else view.total_tasks
    if total is None and query is not None:
        total = len(view.tasks)
    return view.model_copy(
        update={"tasks": page.tasks, "total_tasks": total, "task_counts": counts}
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """Connect to Temporal as ``settings`` say (TLS, API key and payload codec included).

    Gives up after CONNECT_TIMEOUT_SECONDS with :class:`ServerUnreachableError`.
    ``runtime``: the Temporal runtime to use (default: the process's default one).
    """
    key = api_key(settings)
    tls = tls_config(settings, key)
    connecting = Client.connect(
        settings.address,
        namespace=settings.namespace,
        api_key=key,
        tls=tls,
        data_converter=client_data_converter(codec_for(settings)),
        connect_timeout=timedelta(seconds=CONNECT_TIMEOUT_SECONDS),
        runtime=runtime,
    )
    try:
        # The bound also covers a server that accepts connections but never answers.
        return await asyncio.wait_for(connecting, CONNECT_TIMEOUT_SECONDS)
    except (RuntimeError, TimeoutError) as err:
        reason = connection_reason(str(err) or "timeout expired")
        if tls is not False and reason == "connection lost":
            # In TLS 1.3 a server that refuses the client's certificate (or its lack) does so
            # after the client has finished its side of the handshake, and hangs up.
            reason = f"connection closed right after the {TLS_HANDSHAKE}"
        raise ServerUnreachableError(settings.address, reason, local=settings.is_embedded) from err


SCHEDULER_CALL_TIMEOUT = timedelta(seconds=10)


async def ensure_scheduler(
    temporal: Client, settings: Settings, agent: AgentInfo | None = None
) -> None:
    """Start the cluster's scheduler workflow unless it runs (idempotent).

    With ``agent``, also register that agent in the same call (signal-with-start);
    without, tell a running scheduler of an earlier release to continue as new
    (``renew``) so it takes this release's behaviour. A scheduler that ended
    (e.g. failed: its ledger too large to carry) is never started over with an
    empty ledger, which would overcommit hosts: this raises an :class:`RPCError`
    naming the fix instead.
    """
    workflow_id = scheduler_workflow_id(settings.control_task_queue)
    try:
        await temporal.start_workflow(
            SchedulerWorkflow.run,
            None,
            id=workflow_id,
            task_queue=settings.control_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary="titus-flow capacity ledger and scheduler",
            # start_signal takes only a name: read from the signal's definition.
            start_signal=signal_name(
                SchedulerWorkflow.register_agent if agent else SchedulerWorkflow.renew
            ),
            start_signal_args=[agent] if agent else [],
            # An agent's heartbeat must fail, and be tried again, rather than hang
            # on an overloaded server: a hung one reads as a silent agent.
            rpc_timeout=SCHEDULER_CALL_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        raise RPCError(
            f"the scheduler workflow {workflow_id} has ended and holds the cluster's"
            " capacity ledger; it is not started again empty. See why with `temporal"
            f" workflow show -w {workflow_id}`; fix the cause and `temporal workflow reset`"
            f" it, or `temporal workflow delete -w {workflow_id}` to start over with an"
            " empty ledger (running tasks are then unknown to it).",
            RPCStatusCode.FAILED_PRECONDITION,
            b"",
        ) from None


def new_job_id(name: str) -> str:
    """A readable, unique job id: the job name plus 8 random hex digits."""
    return f"{name}-{secrets.token_hex(4)}"


def update_id(workflow_id: str, name: str, args: Sequence[Any], request: str | None = None) -> str:
    """The id of update ``name(*args)`` to ``workflow_id``, derived from the request.

    ``request`` names the caller's request, the same on each retry of it; by
    default the activity sending the update (its workflow run and activity id,
    which its retries keep), else a new one per call. Temporal runs an update
    whose id it has seen in the workflow run only once and answers retries with
    the first outcome, so a retried ``service_rollout`` makes one revision,
    not two; a request of another caller, even an equal one, gets its own id.
    """
    if request is None and activity.in_activity():
        info = activity.info()
        request = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
    payload = [workflow_id, name, to_jsonable_python(list(args)), request or secrets.token_hex(16)]
    return f"{name}-{hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:32]}"


def job_id_of_task(task_id: str) -> str:
    """The job id inside a task id (``<job id>-<index>``); :class:`UserError` if invalid."""
    return split_task_id(task_id)[0]


class TitusClient:
    """Submit and manage jobs on a titus-flow cluster."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.temporal = client
        self.settings = settings
        # Progress of partitions that have ended, by workflow id: it no longer changes.
        self._ended_partitions: dict[str, JobProgress] = {}

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> TitusClient:
        """Connect using ``settings`` (default: environment and config file)."""
        settings = settings or load_settings()
        return cls(await connect(settings), settings)

    async def submit(self, job: BatchJob | ServiceJob, job_id: str | None = None) -> str:
        """Start ``job``; return its id. The spec was validated when it was built.

        Raises :class:`UserError` for an invalid ``job_id``, or for a job on the
        host network when no registered agent allows it.
        """
        job_id = check_id(job_id) if job_id is not None else new_job_id(job.name)
        if job.container.network == "host":
            refuse_host_network(await self._agents_if_known())
        options: dict[str, Any] = {
            "id": job_id,
            "task_queue": self.settings.control_task_queue,
            "search_attributes": visibility.job_search_attributes(job_id, job),
        }
        submitted_at = datetime.now(UTC)
        if isinstance(job, ServiceJob):
            await self.temporal.start_workflow(
                ServiceJobWorkflow.run,
                ServiceJobInput(job=job, submitted_at=submitted_at),
                static_summary=visibility.job_summary(job),
                **options,
            )
        else:
            await self.temporal.start_workflow(
                BatchJobWorkflow.run,
                BatchJobInput(job=job, submitted_at=submitted_at),
                static_summary=visibility.job_summary(job),
                **options,
            )
        return job_id

    def _handle(self, job_id: str) -> WorkflowHandle[BatchJobWorkflow, JobView]:
        return batch_handle(self.temporal, job_id)

    async def describe(self, job_id: str, query: TaskQuery | None = None) -> JobView:
        """The job with a page of its tasks and their attempts (running or finished).

        Without ``query``: every task of a small job; the first page of a large
        one (failed first; ``total_tasks`` and ``task_counts`` say how many
        there are). Cost is bounded by the page, not by the size of the job.
        """
        with _not_found_as_no_job(f"no job {job_id!r}"):
            return await describe_job(self.temporal, job_id, query)

    async def tasks(self, job_id: str, query: TaskQuery) -> TaskPage:
        """One page of the job's tasks ``query`` selects (failed first), and how many match."""
        with _not_found_as_no_job(f"no job {job_id!r}"):
            page, _ = await task_page(self.temporal, await _view_of(self.temporal, job_id), query)
        return page

    async def task(self, task_id: str) -> TaskView:
        """One task of a job (its latest attempts); JobNotFoundError if the job has none such."""
        job_id = job_id_of_task(task_id)
        index = int(task_id.rpartition("-")[2])
        page = await self.tasks(job_id, TaskQuery(first=index, last=index, limit=1))
        found = next((t for t in page.tasks if t.id == task_id), None)
        if found is None:
            raise JobNotFoundError(f"job {job_id} has no task {task_id!r}")
        return found

    async def progress(self, job_id: str) -> JobProgress:
        """Task counts per state of a running job (summed over its partitions).

        Cheap to poll: a running partition answers its own ``progress`` query
        (counts, not the view of its 500 tasks, which cost its workflow worker
        the encoding of a quarter megabyte on every poll); an ended one's final
        view is read once and remembered by this client.
        """
        root = await self._handle(job_id).query(BatchJobWorkflow.progress)
        partitions = await self._partitions(job_id)
        if not partitions:
            return root
        parts = await asyncio.gather(
            *(self._partition_progress(p) for p in partitions), return_exceptions=True
        )
        counts: dict[str, int] = {}
        reasons: set[str] = set()
        for part in parts:
            if isinstance(part, JobProgress):
                for state, count in part.counts.items():
                    counts[state] = counts.get(state, 0) + count
                reasons.update(part.pending_reasons)
        return root.model_copy(update={"counts": counts, "pending_reasons": sorted(reasons)[:5]})

    async def _partition_progress(self, workflow_id: str) -> JobProgress:
        ended = self._ended_partitions.get(workflow_id)
        if ended is not None:
            return ended
        handle = batch_handle(self.temporal, workflow_id)
        if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
            return await handle.query(BatchJobWorkflow.progress)
        view = await _view_of(self.temporal, workflow_id)
        ended = JobProgress(id=view.id, state=view.state, counts=view.counts())
        if view.state.is_final:
            self._ended_partitions[workflow_id] = ended
        return ended

    async def wait(self, job_id: str) -> JobView:
        """Wait for the job to end; return its final view (as :meth:`describe` gives it).

        Also for a job that failed or was killed (whose workflow failed): check
        ``view.state``.
        """
        try:
            await _final_view(self._handle(job_id))
        except WorkflowFailureError as err:
            raise ClusterError(f"job {job_id} workflow failed: {err.cause}") from err
        return await self.describe(job_id)

    async def wait_healthy(
        self,
        job_id: str,
        timeout: float = 300.0,
        revision: int | None = None,
        on_progress: Callable[[JobView], None] | None = None,
    ) -> JobView:
        """Wait until service job ``job_id`` has ``desired`` healthy tasks.

        With ``revision``, only tasks of that revision count and none of another
        may still run (an update or rollback has finished). ``on_progress`` is
        called with the job's view at every look. Returns the job's view;
        raises TimeoutError with the job's last message after ``timeout`` seconds.
        """

        def done(view: JobView, status: ServiceStatus) -> bool:
            others = revision is not None and view.runs_other_revisions(revision)
            healthy = view.healthy_tasks(revision) >= status.desired
            return healthy and not others and view.state is JobState.RUNNING

        def progress(view: JobView, status: ServiceStatus) -> str:
            healthy = f"{view.healthy_tasks(revision)}/{status.desired} healthy"
            return healthy + (f"; {view.message}" if view.message else "")

        return await self._wait_service(job_id, timeout, done, progress, on_progress)

    async def kill(self, job_id: str) -> None:
        """Kill the job: all its tasks are stopped and it finishes as Killed."""
        with _not_found_as_no_job(f"no running job {job_id!r}"):
            await self._handle(job_id).signal(BatchJobWorkflow.kill)

    async def kill_task(self, task_id: str, shrink: bool = False, force: bool = False) -> str:
        """Kill one task; return what happened ("killed", or why the kill waits).

        A batch task finishes as killed and is not retried; a service task is
        replaced, or with ``shrink`` the job's desired drops by one. Without
        ``force`` a service kill waits for the disruption budget.
        """
        job_id = job_id_of_task(task_id)
        root = await self._root_view(job_id)
        if root.type == "service":
            request = KillTaskRequest(task_id=task_id, shrink=shrink, force=force)
            return await self._update(job_id, ServiceJobWorkflow.kill_task, request)
        owner = job_id
        if root.partitions:  # the partition that holds the task's index
            partition = int(task_id.rpartition("-")[2]) // PARTITION_SIZE
            if partition >= len(root.partitions):
                raise JobNotFoundError(f"job {job_id} has no task {task_id!r}")
            owner = root.partitions[partition]
        await self._update(owner, BatchJobWorkflow.kill_task, task_id)  # answers the task's id
        return "killed"

    async def scale(
        self,
        job_id: str,
        desired: int | None = None,
        min: int | None = None,
        max: int | None = None,
    ) -> Capacity:
        """Change a service job's desired/min/max.

        Rejected, changing nothing, unless the result keeps min <= desired <= max.
        """
        request = ScaleRequest(desired=desired, min=min, max=max)
        return await self._update(job_id, ServiceJobWorkflow.scale, request)

    async def update_service(self, job_id: str, job: ServiceJob, canary: int | None = None) -> int:
        """Roll out ``job`` as the next revision of service job ``job_id``.

        With ``canary``, only that many tasks move to the new revision and the
        job holds there until :meth:`promote` or :meth:`rollback`. Returns the
        new revision number.
        """
        if canary is None:
            return await self._update(job_id, ServiceJobWorkflow.update_job, job)
        request = CanaryRequest(job=job, tasks=canary)
        return await self._update(job_id, ServiceJobWorkflow.canary, request)

    async def promote(self, job_id: str) -> int:
        """Roll a service job's canary revision out to every task."""
        return await self._update(job_id, ServiceJobWorkflow.promote)

    async def rollback(self, job_id: str, reason: str = "") -> int:
        """Return a service job to its previous revision; the revision now current."""
        return await self._update(job_id, ServiceJobWorkflow.rollback, reason)

    async def wait_rollout(self, job_id: str, timeout: float = 600.0) -> JobView:
        """Wait until a service job's update settles.

        Settled: rolled out, rolled back, or a canary whose tasks are all
        healthy. Raises TimeoutError after ``timeout`` seconds.
        """
        return await self._wait_service(
            job_id,
            timeout,
            lambda view, status: status.rollout.is_settled or view.canary_ready,
            lambda view, status: status.update or view.message,
        )

    async def _wait_service(
        self,
        job_id: str,
        timeout: float,
        done: Callable[[JobView, ServiceStatus], bool],
        progress: Callable[[JobView, ServiceStatus], str],
        on_progress: Callable[[JobView], None] | None = None,
    ) -> JobView:
        """Poll ``job_id`` until ``done`` or the job ends; TimeoutError after ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            view = await self.describe(job_id)
            status = view.service
            if status is None:
                raise UserError(f"job {job_id} is a {view.type} job, not a service job")
            if on_progress is not None:
                on_progress(view)
            if done(view, status) or view.state.is_final:
                return view
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"job {job_id}: {progress(view, status)} after {timeout:g}s")
            await asyncio.sleep(0.5)

    @overload
    async def _update(self, workflow_id: str, update: UpdateMethodMultiParam[[Any], T]) -> T: ...

    @overload
    async def _update(
        self, workflow_id: str, update: UpdateMethodMultiParam[[Any, A], T], arg: A, /
    ) -> T: ...

    async def _update(
        self, workflow_id: str, update: UpdateMethodMultiParam[..., T], *args: Any
    ) -> T:
        """Send ``update`` (a ``@workflow.update`` method) to ``workflow_id``; its answer."""
        handle = self.temporal.get_workflow_handle(workflow_id)
        try:
            with _not_found_as_no_job(f"no running job {workflow_id!r}"):
                result: T = await handle.execute_update(
                    update,
                    args=args,
                    id=update_id(workflow_id, update_name(update), args),
                )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise UserError(message) from err
        return result

    async def _root_view(self, job_id: str) -> JobView:
        with _not_found_as_no_job(f"no job {job_id!r}"):
            return await self._handle(job_id).query(BatchJobWorkflow.describe)

    async def _partitions(self, job_id: str) -> list[str]:
        return (await self._root_view(job_id)).partitions

    async def _view_of(self, workflow_id: str) -> JobView:
        return await _view_of(self.temporal, workflow_id)

    async def list_jobs(
        self, state: str | None = None, job_type: str | None = None, limit: int = 100
    ) -> list[dict[str, str | None]]:
        """Jobs from Temporal visibility, the most recently started first.

        ``state`` is a job state in any case (``failed`` is ``Failed``); an
        unknown one raises :class:`UserError` naming the valid ones. A job
        without an owner has ``owner`` None.
        """
        clauses = ["TitusJobType IS NOT NULL"]
        if state:
            clauses.append(f"TitusJobState = '{_quote(job_state(state).value)}'")
        if job_type:
            clauses.append(f"TitusJobType = '{_quote(job_type)}'")
        where = " AND ".join(clauses)
        # Running jobs come newest-started first: the first ``limit`` are enough
        # (10,000 running jobs were all read, 3.7 s). Ended ones follow by close
        # time, and their scan stops once nothing older can be among the newest.
        running = [
            wf
            async for wf in self.temporal.list_workflows(
                f"{where} AND ExecutionStatus = 'Running'", limit=limit
            )
        ]
        ended = self.temporal.list_workflows(f"{where} AND ExecutionStatus != 'Running'")
        jobs: list[dict[str, str | None]] = []
        for wf in await _newest_started(ended, limit, running):
            attrs = wf.typed_search_attributes
            owner = attrs.get(visibility.OWNER)
            jobs.append(
                {
                    "id": wf.id,
                    "name": attrs.get(visibility.JOB_NAME) or "",
                    "type": attrs.get(visibility.JOB_TYPE) or "",
                    "state": attrs.get(visibility.JOB_STATE) or "",
                    "owner": None if owner in (None, "", visibility.NO_OWNER) else owner,
                    "started": wf.start_time.isoformat(),
                }
            )
        return jobs

    async def agents(self, query: AgentQuery | None = None) -> list[AgentView]:
        """Agents the scheduler knows, with their reserved capacity and task counts.

        The page ``query`` asks for; without one, every agent (page after page:
        one answer is bounded, issue 11).
        """
        handle = scheduler_handle(self.temporal, self.settings)
        with self._scheduler_answers():
            if query is not None:
                return await handle.query(SchedulerWorkflow.agents, query)
            views: list[AgentView] = []
            while True:
                page = await handle.query(SchedulerWorkflow.agents, AgentQuery(offset=len(views)))
                views += page
                if len(page) < AGENTS_PAGE:
                    return views

    async def agent_tasks(self, query: AgentTasksQuery) -> AgentTasks:
        """A page of the keys of the tasks holding capacity on one agent."""
        handle = scheduler_handle(self.temporal, self.settings)
        with self._scheduler_answers():
            return await handle.query(SchedulerWorkflow.agent_tasks, query)

    async def _agents_if_known(self) -> list[AgentView] | None:
        """The registered agents, or None if no scheduler answers (yet)."""
        try:
            return await self.agents()
        except (UserError, ClusterError, RPCError):
            return None

    async def drain_agent(self, agent_id: str) -> None:
        """Place nothing more on ``agent_id``; its running tasks finish where they are."""
        if agent_id not in {a.agent_id for a in await self.agents()}:
            raise UserError(f"no agent {agent_id!r}; see `titus-flow agents list`")
        handle = scheduler_handle(self.temporal, self.settings)
        await handle.signal(SchedulerWorkflow.drain_agent, agent_id)

    async def capacity_groups(self) -> list[CapacityGroupView]:
        """Every capacity group (and the implicit ``default``) with what its tasks use now."""
        handle = scheduler_handle(self.temporal, self.settings)
        with self._scheduler_answers():
            return await handle.query(SchedulerWorkflow.capacity_groups)

    async def put_capacity_group(
        self, group: CapacityGroup, expect: Literal["any", "new", "existing"] = "any"
    ) -> CapacityGroupView:
        """Create or replace ``group``; tasks waiting for capacity are placed again under it.

        ``expect="new"`` refuses to replace an existing group, ``"existing"`` to
        create one (both raise :class:`UserError`, changing nothing).
        """
        workflow_id = scheduler_workflow_id(self.settings.control_task_queue)
        request = PutCapacityGroup(group=group, expect=expect)
        try:
            return await self._update(workflow_id, SchedulerWorkflow.put_capacity_group, request)
        except JobNotFoundError as err:  # the scheduler workflow is not running
            raise self._no_scheduler(err) from err

    @contextlib.contextmanager
    def _scheduler_answers(self) -> Iterator[None]:
        """Say to start a control worker when the scheduler workflow is not there.

        Any other RPCError (a server that cannot be reached or was lost, a query
        that timed out) is raised as is.
        """
        try:
            yield
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            raise self._no_scheduler(err) from err

    def _no_scheduler(self, err: Exception) -> UserError:
        return UserError(
            f"the scheduler of control queue {self.settings.control_task_queue!r} does not"
            f" answer ({err}); start a control worker (`titus-flow up` or `titus-flow worker`)"
        )

    async def read_logs(
        self, task_id: str, attempt: int | None = None, offset: int = 0
    ) -> LogsChunk:
        """Read one page of an attempt's output (default: the latest attempt) from ``offset``.

        Works while the attempt runs (what it has written so far) and after
        (its kept log). A page holds at most ``LOGS_PAGE_BYTES``; ``more`` says
        whether another follows at ``next_offset`` already. A task not yet
        started has no output: an empty chunk for attempt 0.
        """
        source = await self._log_source(task_id, attempt)
        if source is None:
            return LogsChunk(data="", next_offset=0, complete=False)
        return await self._fetch_logs(source, offset)

    async def logs(
        self, task_id: str, attempt: int | None = None, *, follow: bool = False
    ) -> AsyncIterator[LogsChunk]:
        """Yield an attempt's output (default: the latest attempt) page by page.

        Without ``follow``: what it has written so far (all of it once it has
        ended). With ``follow``: then what it writes, as it writes it, until
        the attempt ends (the last chunk is ``complete``); a task that has not
        started yet is waited for. The attempt is chosen once: a retry that
        starts later is another attempt.
        """
        source = await self._log_source(task_id, attempt)
        while source is None:
            if not follow:
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            source = await self._log_source(task_id, attempt)
        offset = 0
        wait = FOLLOW_WAIT_SECONDS if follow else 0.0
        while True:
            chunk = await self._fetch_logs(source, offset, wait)
            offset = chunk.next_offset
            if chunk.data or chunk.complete:
                yield chunk
            if chunk.complete or (not follow and not chunk.more):
                return
            if not (chunk.data or chunk.more) and await self._attempt_ended(source):
                # Ended without output on the agent (e.g. its launch failed): nothing more comes.
                last = await self._fetch_logs(source, offset)
                yield last.model_copy(update={"complete": True})
                return

    async def follow_logs(self, task_id: str, attempt: int | None = None) -> AsyncIterator[str]:
        """Yield an attempt's output as it is written, until the attempt ends."""
        async for chunk in self.logs(task_id, attempt, follow=True):
            if chunk.data:
                yield chunk.data

    async def _log_source(self, task_id: str, attempt: int | None) -> _LogSource | None:
        """Where ``attempt`` of ``task_id`` ran (default: its latest); None before its first."""
        task = await self.task(task_id)
        if not task.attempts and attempt is None:
            return None
        number = attempt or task.attempts[-1].attempt
        record = next((a for a in task.attempts if a.attempt == number), None)
        if record is None or record.agent is None:
            held = len(task.attempts) + task.attempts_omitted
            raise UserError(f"task {task_id} has no attempt {number} with an agent (it has {held})")
        return _LogSource(task_id=task_id, attempt=number, agent=record.agent)

    async def _attempt_ended(self, source: _LogSource) -> bool:
        """Whether the job says ``source``'s attempt has finished."""
        try:
            task = await self.task(source.task_id)
        except JobNotFoundError:  # a service job keeps only its latest finished tasks
            return True
        record = next((a for a in task.attempts if a.attempt == source.attempt), None)
        return record is None or record.finished_at is not None or record.reason is not None

    async def _fetch_logs(self, source: _LogSource, offset: int, wait: float = 0.0) -> LogsChunk:
        """One page from the agent that ran the attempt, through a FetchLogs workflow."""
        try:
            chunk = await self.temporal.execute_workflow(
                FetchLogsWorkflow.run,
                FetchLogsInput(
                    task_queue=agent_task_queue(source.agent),
                    request=LogsInput(
                        task_id=source.task_id, attempt=source.attempt, offset=offset, wait=wait
                    ),
                ),
                id=f"logs-{source.task_id}-a{source.attempt}-{secrets.token_hex(3)}",
                task_queue=self.settings.control_task_queue,
            )
        except WorkflowFailureError as err:
            cause = err.cause  # the activity's failure, inside the workflow's
            if isinstance(cause, FailureError) and cause.cause is not None:
                cause = cause.cause
            raise UserError(
                f"cannot read the logs of {source.task_id} attempt {source.attempt} on agent"
                f" {source.agent}: {cause}"
            ) from err
        return chunk.model_copy(update={"attempt": source.attempt})


@dataclass(frozen=True)
class _LogSource:
    """One attempt of one task, and the agent that holds its output."""

    task_id: str
    attempt: int
    agent: str


def job_state(name: str) -> JobState:
    """The job state called ``name``, in any case; UserError naming the valid ones."""
    for state in JobState:
        if state.value.lower() == name.lower():
            return state
    valid = ", ".join(s.value for s in JobState)
    raise UserError(f"invalid job state {name!r}: use one of {valid}")


async def _newest_started(
    executions: AsyncIterator[WorkflowExecution],
    limit: int,
    already: Sequence[WorkflowExecution] = (),
) -> list[WorkflowExecution]:
    """The ``limit`` most recently started of ``already`` and ``executions``, newest first.

    Visibility on SQL (the dev server's) cannot ORDER BY: it lists running
    workflows first, newest started first, then closed ones by close time,
    newest first. A workflow closes after it starts, so once ``limit`` kept
    workflows started after the close time the listing has reached, none
    listed later can be newer: the scan stops there instead of reading every job.
    """
    newest: list[tuple[datetime, int, WorkflowExecution]] = []  # min-heap of the kept
    for position, wf in enumerate(already):
        heapq.heappush(newest, (wf.start_time, -1 - position, wf))
        if len(newest) > limit:
            heapq.heappop(newest)
    position = 0  # breaks ties in start time
    async for wf in executions:
        position += 1
        heapq.heappush(newest, (wf.start_time, position, wf))
        if len(newest) > limit:
            heapq.heappop(newest)
        if wf.close_time is not None and len(newest) == limit and newest[0][0] >= wf.close_time:
            break
    return [wf for _, _, wf in sorted(newest, key=lambda kept: kept[0], reverse=True)]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


__all__ = [
    "JobNotFoundError",
    "TitusClient",
    "connect",
    "job_id_of_task",
    "new_job_id",
]
