"""Users' own workflows, job-file DAGs (``depends_on``) and schedules, on the cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from titus_flow.client.base import ClientBase, new_job_id
from titus_flow.errors import ClusterError, UserError
from titus_flow.spec import BatchJob, ServiceJob
from titus_flow.workflows.dag import DAG_WORKFLOW, DagInput, DagResult

# Schedules carry this memo key (the control task queue), so listing them
# shows the schedules of this cluster only, even in a shared namespace.
_QUEUE_MEMO = "titus_flow_control_task_queue"

OVERLAP_POLICIES = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
}
"""What a schedule does when a run is due while the previous one still runs, by name."""

ScheduleVerb = Literal["pause", "unpause", "trigger", "delete"]


def has_dependencies(jobs: Sequence[BatchJob | ServiceJob]) -> bool:
    """Whether any job of a file declares ``depends_on`` (so it runs as a DAG)."""
    return any(isinstance(job, BatchJob) and job.depends_on for job in jobs)


def dag_input(jobs: Sequence[BatchJob | ServiceJob]) -> DagInput:
    """The DAG workflow's input for the jobs of one file; UserError for service jobs."""
    batch = [job for job in jobs if isinstance(job, BatchJob)]
    if len(batch) != len(jobs):
        raise UserError("service jobs are not supported yet in files that use depends_on")
    return DagInput(jobs=batch)


def workflow_action(
    name: str, workflow: str, args: Sequence[Any], task_queue: str
) -> ScheduleActionStartWorkflow:
    """What each run of schedule ``name`` starts: the user's workflow ``workflow``."""
    # Temporal appends the scheduled time to the id: nightly-2025-01-01T02:00:00Z.
    return ScheduleActionStartWorkflow(workflow, args=list(args), id=name, task_queue=task_queue)


def dag_action(
    name: str, jobs: Sequence[BatchJob | ServiceJob], source: str, task_queue: str
) -> ScheduleActionStartWorkflow:
    """What each run of schedule ``name`` starts: the jobs of file ``source``.

    Every job-file run goes through the DAG workflow, even for one job: a run's
    workflow id is only known when it fires, so a wrapper gives its job(s) a
    proper job id, TitusJobId, submission time and container-safe name.
    """
    return ScheduleActionStartWorkflow(
        DAG_WORKFLOW,
        dag_input(jobs),
        id=name,
        task_queue=task_queue,
        static_summary=f"scheduled run of {source}",
    )


class FlowsClient(ClientBase):
    """Start users' workflows and job-file DAGs; create, list and control schedules."""

    async def start_workflow(
        self, workflow: str, args: Sequence[Any], workflow_id: str
    ) -> WorkflowHandle[Any, Any]:
        """Start the user's workflow named ``workflow`` on the control task queue."""
        return await self.temporal.start_workflow(
            workflow, args=list(args), id=workflow_id, task_queue=self.settings.control_task_queue
        )

    async def start_dag(
        self, jobs: Sequence[BatchJob | ServiceJob], dag_id: str | None = None
    ) -> str:
        """Start the jobs of one file as a DAG workflow; return its id."""
        dag_id = dag_id or new_job_id("dag")
        await self.temporal.start_workflow(
            DAG_WORKFLOW,
            dag_input(jobs),
            id=dag_id,
            task_queue=self.settings.control_task_queue,
            static_summary=f"depends_on DAG of {len(jobs)} job(s)",
        )
        return dag_id

    async def wait_dag(self, dag_id: str) -> DagResult:
        """Wait for a DAG workflow; its result, also when it failed."""
        try:
            result: DagResult = await self.temporal.get_workflow_handle(
                dag_id, result_type=DagResult
            ).result()
            return result
        except WorkflowFailureError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == "DagFailed" and cause.details:
                return DagResult.model_validate(cause.details[0])
            raise ClusterError(f"DAG {dag_id} failed: {cause or err}") from err

    async def create_schedule(
        self,
        name: str,
        action: ScheduleActionStartWorkflow,
        spec: ScheduleSpec,
        overlap: str = "skip",
        note: str = "",
    ) -> None:
        """Create schedule ``name``; UserError if it exists or the server refuses its spec."""
        try:
            await self.temporal.create_schedule(
                name,
                Schedule(
                    action=action,
                    spec=spec,
                    policy=SchedulePolicy(overlap=OVERLAP_POLICIES[overlap]),
                    state=ScheduleState(note=note),
                ),
                memo={_QUEUE_MEMO: self.settings.control_task_queue},
            )
        except ScheduleAlreadyRunningError as err:
            raise UserError(f"schedule {name!r} already exists; delete it first") from err
        except RPCError as err:
            if err.status is RPCStatusCode.INVALID_ARGUMENT:
                raise UserError(f"schedule {name}: {err.message}") from err
            raise

    async def schedules(self) -> list[dict[str, Any]]:
        """The schedules of this cluster by name: workflow, spec, paused, next and recent runs."""
        rows = []
        async for item in await self.temporal.list_schedules():
            if await item.memo_value(_QUEUE_MEMO, None) != self.settings.control_task_queue:
                continue
            sched = item.schedule
            info = item.info
            rows.append(
                {
                    "name": item.id,
                    "workflow": getattr(sched.action, "workflow", "") if sched else "",
                    "spec": _describe_spec(sched.spec) if sched else "",
                    "paused": bool(sched and sched.state.paused),
                    "next_run": info.next_action_times[0].isoformat()
                    if info and info.next_action_times
                    else "",
                    "recent_runs": [
                        getattr(a.action, "workflow_id", "") for a in info.recent_actions
                    ]
                    if info
                    else [],
                }
            )
        return sorted(rows, key=lambda r: str(r["name"]))

    async def control_schedule(self, name: str, verb: ScheduleVerb) -> None:
        """Pause, unpause, trigger or delete schedule ``name``; UserError if there is none."""
        handle = self.temporal.get_schedule_handle(name)
        try:
            await getattr(handle, verb)()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                raise UserError(f"no schedule {name!r}") from err
            raise


def _describe_spec(spec: ScheduleSpec) -> str:
    parts = [f"cron {c}" for c in spec.cron_expressions]
    parts += [f"cron {_calendar_as_cron(c)}" for c in spec.calendars]
    parts += [f"every {i.every}" for i in spec.intervals]
    return ", ".join(parts) + (f" ({spec.time_zone_name})" if spec.time_zone_name else "")


def _calendar_as_cron(calendar: ScheduleCalendarSpec) -> str:
    """The server stores a cron expression as a calendar; show it as cron again."""

    def field(ranges: Sequence[ScheduleRange], low: int, high: int) -> str:
        if [(r.start, max(r.end, r.start)) for r in ranges] == [(low, high)]:
            return "*"
        return ",".join(
            str(r.start)
            + (f"-{r.end}" if r.end > r.start else "")
            + (f"/{r.step}" if r.step > 1 else "")
            for r in ranges
        )

    fields = [
        field(calendar.minute, 0, 59),
        field(calendar.hour, 0, 23),
        field(calendar.day_of_month, 1, 31),
        field(calendar.month, 1, 12),
        field(calendar.day_of_week, 0, 6),
    ]
    seconds = field(calendar.second, 0, 59)
    return " ".join(fields if seconds == "0" else [seconds, *fields])
