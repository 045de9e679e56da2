"""What every part of the client shares: its connection, typed handles, updates, ids."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterator, Sequence
from typing import Any, Self, TypeVar, overload

from pydantic_core import to_jsonable_python
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from titus_flow.client.connection import connect
from titus_flow.cluster import scheduler_workflow_id
from titus_flow.config import Settings, load_settings
from titus_flow.errors import UserError
from titus_flow.ids import split_task_id
from titus_flow.refs import update_name
from titus_flow.views import JobView
from titus_flow.workflows.batch import BatchJobWorkflow
from titus_flow.workflows.scheduler import SchedulerWorkflow

T = TypeVar("T")
A = TypeVar("A")


class JobNotFoundError(UserError):
    """No job (or task) with that id."""


@contextlib.contextmanager
def not_found_as_no_job(message: str) -> Iterator[None]:
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


class ClientBase:
    """A Temporal client and the cluster's settings: what every part of the client uses."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.temporal = client
        self.settings = settings

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> Self:
        """Connect using ``settings`` (default: environment and config file)."""
        settings = settings or load_settings()
        return cls(await connect(settings), settings)

    def _handle(self, job_id: str) -> WorkflowHandle[BatchJobWorkflow, JobView]:
        return batch_handle(self.temporal, job_id)

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
            with not_found_as_no_job(f"no running job {workflow_id!r}"):
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
