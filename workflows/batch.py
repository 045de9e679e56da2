"""The batch job workflow: N tasks run to completion, with retries, durably.

Each task is a coroutine of this workflow, not a workflow of its own: per-task
workflows cost a workflow start and several workflow tasks each, which on the
dev server caps throughput near that of a plain 4-activity workflow (see
docs/architecture.md). A task's attempt is two activities on its agent's task
queue: ``launch`` (returns once the container runs) and ``supervise`` (one
heartbeating activity until exit). Capacity comes from the scheduler workflow
in batches through :class:`SchedulerMailbox`.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ChildWorkflowHandle

with workflow.unsafe.imports_passed_through():
    from titus_flow import attempt_machine, visibility
    from titus_flow.contracts import BatchJobInput, PlacementItem, PlacementUpdate, Unplaced
    from titus_flow.lifecycle import FinishReason, JobState, TaskState
    from titus_flow.outcomes import batch_job_ending, child_job_view, end_job
    from titus_flow.spec import BatchJob
    from titus_flow.views import (
        CarriedTasks,
        JobProgress,
        JobView,
        TaskCarry,
        TaskPage,
        TaskQuery,
        TaskView,
        bounded_tasks,
        page_tasks,
    )
    from titus_flow.workflows.attempts import Outcome
    from titus_flow.workflows.batch_gates import TaskGates
    from titus_flow.workflows.batch_partitions import (
        kill_partitions,
        partition_input,
        partition_summaries,
        summed_counts,
    )
    from titus_flow.workflows.batch_tasks import (
        backoff,
        holding,
        launch_and_supervise,
        should_continue,
        supervise_attempt,
    )
    from titus_flow.workflows.common import SchedulerMailbox
    from titus_flow.workflows.journal import JobJournal, Journaling
    from titus_flow.workflows.requester import PlacementRequester

BOUNDED_VIEWS_PATCH = "bounded-job-views"
"""``workflow.patched`` id of "a job (or partition) ends with a bounded view": at
most :data:`~titus_flow.views.VIEW_TASK_BYTES` of task rows, failed first, and a
partitioned root's view carries its partitions' counts and first failures."""

CONTINUE_AS_NEW_PATCH = "batch-continues-as-new"
"""``workflow.patched`` id of a batch run (a small job or a partition) that continues
as new when Temporal suggests it or past its input's history limits, carrying its
tasks (running ones too), and retries a platform failure after a backoff
(:func:`~titus_flow.lifecycle.platform_retry_delay`), asking to avoid the agent it
failed on. Runs of the previous release never continued and retried at once."""


@workflow.defn(name="BatchJob", sandboxed=False)
class BatchJobWorkflow(PlacementRequester, Journaling[JobJournal]):
    """Runs every task of a :class:`~titus_flow.spec.BatchJob` to a finish."""

    @workflow.init
    def __init__(self, request: BatchJobInput) -> None:
        # Built from the input here, not in run(): a query, signal or update that
        # arrives with the first workflow task is handled before run() starts.
        job = request.job
        info = workflow.info()
        self._job_id = request.job_id or info.workflow_id
        self._partitioned = request.count is None and job.instances > request.partition_size
        first = request.first_index
        count = job.instances if request.count is None else request.count
        carried = request.carried
        # Per live task: retry counts and where it runs (carried across runs).
        self._carries: dict[str, TaskCarry] = {}
        if carried is not None:  # a run that continued as new
            rows = carried.tasks(self._job_id)
            tasks = [view for view, _ in rows]
            self._carries = {view.id: carry for view, carry in rows if carry is not None}
        elif self._partitioned:
            tasks = []
        else:
            tasks = [
                TaskView(id=f"{self._job_id}-{index}", index=index)
                for index in range(first, first + count)
            ]
        self._view: JobView | None = JobView(
            id=self._job_id,
            name=job.name,
            type="batch",
            owner=job.owner,
            state=carried.state if carried else JobState.ACCEPTED,
            submitted_at=request.submitted_at,
            total_tasks=job.instances if self._partitioned else None,
            tasks=tasks,
            security=job.security if job.security.is_set else None,
        )
        self._tasks = {task.id: task for task in self._view.tasks}
        self.journal = JobJournal(self._job_id, "batch", request.events, request.count is not None)
        if carried is None:
            self.journal.accepted(tasks, f"{job.instances} task(s)")
        self._gates = TaskGates(request, self._job_id, self._view.tasks)
        self._mailbox: SchedulerMailbox | None = SchedulerMailbox(info.workflow_id)
        self._task_runs: dict[str, asyncio.Task[None]] = {}
        self._kill_reasons: dict[str, FinishReason] = {}
        self._job_kill_requested = carried.killed if carried else False
        self._partitions: list[ChildWorkflowHandle[BatchJobWorkflow, JobView]] = []
        self._continues = False  # this run may continue as new (decided in run())
        self._handing_over = False  # it is about to: start no attempt
        self._parked: set[str] = set()  # tasks whose next attempt waits for the next run

    @workflow.run
    async def run(self, request: BatchJobInput) -> JobView:
        """Run the job (or one partition of it); return its final view.

        A job that did not succeed fails the workflow instead, with the view in
        the failure (:func:`~titus_flow.outcomes.end_job`). A job of more than
        ``request.partition_size`` tasks runs as partitions, child workflows of
        at most that many tasks each; the root's view then lists the partitions,
        not tasks. A small job or a partition continues as new before its
        history nears Temporal's limits (:meth:`_hand_over`).
        """
        view, mailbox = self._view, self._mailbox
        assert view is not None and mailbox is not None
        if self._partitioned:
            await self._run_partitions(request, self._job_id)
            return end_job(view)
        self._continues = workflow.patched(CONTINUE_AS_NEW_PATCH)
        if request.carried is not None:  # what the previous run held back, sent first
            for key in request.carried.releases:
                mailbox.release(key)
        flusher = asyncio.create_task(mailbox.run())
        for task in view.tasks:
            if task.state is not TaskState.FINISHED:  # finished: carried from a previous run
                self._task_runs[task.id] = asyncio.create_task(self._run_task(request.job, task))
        if self._job_kill_requested:  # killed before it started
            for task_id in self._task_runs:
                self._kill_task(task_id, FinishReason.KILLED)
        for task_id, carry in self._carries.items():
            if carry.kill is not None:  # a kill that came as the previous run ended
                self._kill_task(task_id, carry.kill)
        if not self._continues:
            await asyncio.gather(*self._task_runs.values(), return_exceptions=False)
        elif await self._hand_over(request):
            carried = {"carried": self._carried(request), "events": self.journal.tail()}
            workflow.continue_as_new(request.model_copy(update=carried))
        mailbox.close()
        await flusher
        self._finish(view.counts(), [t for t in view.tasks if t.failed])
        # Before the patch the view carried every task whole (megabytes for a
        # 500-task partition of failures with outputs: it could not complete).
        return end_job(view.bounded() if workflow.patched(BOUNDED_VIEWS_PATCH) else view)

    async def _run_partitions(self, request: BatchJobInput, job_id: str) -> None:
        assert self._view is not None
        self._view.partition_views = partition_summaries(
            job_id, request.job.instances, request.partition_size
        )
        self._view.partitions = [summary.id for summary in self._view.partition_views]
        self.journal.parts = self._view.partitions
        self._set_state(JobState.RUNNING)
        for summary in self._view.partition_views:
            first, last = summary.first_index, summary.first_index + summary.count - 1
            self._partitions.append(
                await workflow.start_child_workflow(
                    BatchJobWorkflow.run,
                    partition_input(request, job_id, summary),
                    id=summary.id,
                    static_summary=f"tasks {first}-{last} of job {job_id}",
                )
            )
        if self._job_kill_requested:  # a kill that came while partitions started
            await kill_partitions(self._partitions, BatchJobWorkflow.kill)
        # A partition whose tasks did not all succeed fails, carrying its view.
        views = await asyncio.gather(
            *(self._partition_ended(n, p) for n, p in enumerate(self._partitions))
        )
        counts = summed_counts(part.counts() for part in views)
        failed = [task for part in views for task in part.tasks if task.failed]
        self._finish(counts, failed)
        if workflow.patched(BOUNDED_VIEWS_PATCH):
            # The root keeps counts and the first failures, never every task.
            self._view.task_counts = counts
            self._view.tasks = bounded_tasks(failed)

    async def _partition_ended(
        self, n: int, partition: ChildWorkflowHandle[BatchJobWorkflow, JobView]
    ) -> JobView:
        """Partition ``n``'s final view, once it ends; its summary is kept at once."""
        view = await child_job_view(partition)
        assert self._view is not None
        summary = self._view.partition_views[n]
        summary.state, summary.counts, summary.message = view.state, view.counts(), view.message
        return view

    # --- signals, updates and queries ------------------------------------

    def on_placement_update(self, update: PlacementUpdate) -> None:
        """The scheduler's answer to this job's capacity requests (``placement_update``)."""
        assert self._mailbox is not None
        self._mailbox.on_update(update)

    @workflow.signal(name="kill")
    async def kill(self) -> None:
        """Kill the job: stop every task (KillInitiated -> Finished/killed)."""
        self._job_kill_requested = True
        for task_id in self._task_runs:
            self._kill_task(task_id, FinishReason.KILLED)
        if self._partitions:
            self._set_state(JobState.KILL_INITIATED)
            await kill_partitions(self._partitions, BatchJobWorkflow.kill)

    @workflow.update(name="kill_task")
    def kill_task(self, task_id: str) -> str:
        """Kill one task; it finishes as killed and is not retried."""
        self._kill_task(task_id, FinishReason.KILLED)
        return task_id

    @kill_task.validator
    def _validate_kill_task(self, task_id: str) -> None:
        if task_id not in self._tasks:
            raise ApplicationError(f"job has no task {task_id!r}", non_retryable=True)

    @workflow.query(name="describe")
    def describe(self) -> JobView:
        """The job and its tasks, bounded: every task of a small job, else failed first.

        A partitioned job's root holds no tasks, only its partitions' summaries.
        """
        assert self._view is not None
        self._refresh_pending_reasons()
        return self._view.bounded()

    @workflow.query(name="tasks")
    def tasks(self, query: TaskQuery) -> TaskPage:
        """One page of this workflow's tasks: those ``query`` selects, failed first."""
        assert self._view is not None
        self._refresh_pending_reasons()
        return page_tasks(self._view.tasks, query)

    @workflow.query(name="progress")
    def progress(self) -> JobProgress:
        """Counts of tasks per state, and why tasks wait (cheap to poll)."""
        assert self._view is not None
        reasons = self._mailbox.pending_reasons.values() if self._mailbox else []
        return JobProgress(
            id=self._view.id,
            state=self._view.state,
            counts=self._view.counts(),
            pending_reasons=sorted(set(reasons))[:5],
        )

    # --- the task lifecycle ------------------------------------------------

    def _kill_task(self, task_id: str, reason: FinishReason) -> None:
        run = self._task_runs.get(task_id)
        if run is None or task_id in self._kill_reasons:
            return
        assert self._view is not None
        task = self._tasks[task_id]
        if run.done():
            if task_id in self._parked:  # waiting for the next run: it never starts
                self._parked.discard(task_id)
                self._kill_reasons[task_id] = reason
                self._finish_task(task, reason, "killed by request")
            return
        self._kill_reasons[task_id] = reason
        if task.state is not TaskState.FINISHED:
            task.state = TaskState.KILL_INITIATED
            self.journal.task(task)
        if self._view.state in (JobState.ACCEPTED, JobState.RUNNING) and self._job_kill_requested:
            self._set_state(JobState.KILL_INITIATED)
        run.cancel()

    async def _run_task(self, job: BatchJob, task: TaskView) -> None:
        carry = self._carries.setdefault(task.id, TaskCarry())
        # Carried Started: its container runs; supervise it again.
        adopt = task.state is TaskState.STARTED and carry.task_queue is not None
        try:
            if not adopt and carry.not_before is not None:  # carried in a backoff
                await backoff(task, carry, carry.not_before - workflow.now())
            gated = self._gates.active and not task.attempts  # sequential, n_to_n
            if gated and (why := await self._gates.blocked(task)):
                self._finish_task(task, FinishReason.FAILED, why)
                return
            while True:
                outcome: Outcome | None = None
                if adopt:
                    adopt = False
                    outcome = await self._adopt(job, task, carry)
                elif not self._handing_over:
                    outcome = await self._run_attempt(job, task, carry)
                if outcome is None:  # the next run starts its next attempt
                    self._parked.add(task.id)
                    return
                if task.id in self._kill_reasons:
                    # The kill reached the attempt as its outcome (the activity
                    # reports the cancellation): never retry a killed task.
                    self._finish_task(task, self._kill_reasons[task.id], "killed by request")
                    return
                delay = attempt_machine.next_attempt_delay(
                    job.retry, task, carry, outcome, self._continues
                )
                self.journal.attempt_ended(task, outcome.reason, delay)
                if delay is None:
                    self._finish_task(task, outcome.reason, outcome.message)
                    return
                await backoff(task, carry, delay)
        except asyncio.CancelledError:
            reason = self._kill_reasons.get(task.id, FinishReason.KILLED)
            self._finish_task(task, reason, "killed by request")

    async def _run_attempt(self, job: BatchJob, task: TaskView, carry: TaskCarry) -> Outcome | None:
        """Place, launch and supervise the task's next attempt; None if the run hands over first."""
        assert self._mailbox is not None
        task.state = TaskState.ACCEPTED
        avoid = [carry.avoid_agent] if carry.avoid_agent else None
        placement = await self._mailbox.reserve(
            PlacementItem.for_task(task.id, self._job_id, job, avoid)
        )
        if isinstance(placement, Unplaced):
            return Outcome(FinishReason.INVALID_REQUEST, None, placement.reason, retryable=False)
        if self._handing_over:  # a placement that raced the hold: the next run asks again
            self._mailbox.release(task.id)
            return None
        attempt = attempt_machine.place(task, placement.agent_id, workflow.now())
        self.journal.task(task)
        work = launch_and_supervise(self._job_id, job, task, attempt, placement, carry)
        return await holding(self._mailbox, task, attempt, work)

    async def _adopt(self, job: BatchJob, task: TaskView, carry: TaskCarry) -> Outcome:
        """Supervise the Started attempt a previous run left running (its capacity still held)."""
        assert self._mailbox is not None
        attempt = task.attempts[-1]
        return await holding(
            self._mailbox, task, attempt, supervise_attempt(job, task, attempt, carry)
        )

    # --- continue-as-new ------------------------------------------------------

    async def _hand_over(self, request: BatchJobInput) -> bool:
        """Wait for every task to finish (False), or for the moment to continue as new (True).

        Once the history is long enough, no attempt starts any more: the
        mailbox sends nothing more (the next run sends its releases), tasks
        about to start an attempt (after a placement or a backoff) park,
        launches in flight are waited for (seconds), and Started tasks are
        carried as they are: the next run supervises their containers again
        (the agent adopts a container by its attempt's name) and their ledger
        reservations stay. A job kill meanwhile ends the job in this run.
        """
        assert self._mailbox is not None
        runs = list(self._task_runs.values())
        await workflow.wait_condition(
            lambda: all(run.done() for run in runs) or should_continue(request)
        )
        if all(run.done() for run in runs):
            return False
        self._handing_over = True
        self._mailbox.hold()
        await workflow.wait_condition(
            lambda: self._job_kill_requested or self._ready_to_hand_over()
        )
        if self._job_kill_requested or not (self._parked or self._live()):
            # Killed, or every task finished meanwhile: end in this run.
            self._mailbox.hold(False)
            await asyncio.gather(*runs)
            return False
        info = workflow.info()
        workflow.logger.info(
            "continuing as new at %d events, %d bytes",
            info.get_current_history_length(),
            info.get_current_history_size(),
        )
        return True

    def _live(self) -> list[TaskView]:
        """Tasks not finished and not parked (their coroutine still runs)."""
        return [self._tasks[t] for t, run in self._task_runs.items() if not run.done()]

    def _ready_to_hand_over(self) -> bool:
        """Whether each live task can go on in the next run, and nothing is left to send."""
        assert self._mailbox is not None
        if not (self._mailbox.idle and workflow.all_handlers_finished()):
            return False
        return not any(
            task.id in self._kill_reasons
            or task.state not in (TaskState.ACCEPTED, TaskState.STARTED)
            for task in self._live()  # launching, or being killed: soon settled
        )

    def _carried(self, request: BatchJobInput) -> CarriedTasks:
        """The tasks as the next run takes them over."""
        assert self._view is not None
        return CarriedTasks.of(
            self._view.tasks,
            self._carries,
            request.submitted_at,
            state=self._view.state,
            killed=self._job_kill_requested,
            releases=self._mailbox.unsent_releases() if self._mailbox else [],
        )

    # --- bookkeeping --------------------------------------------------------

    def _finish_task(self, task: TaskView, reason: FinishReason, message: str) -> None:
        task.state, task.reason, task.message = TaskState.FINISHED, reason, message
        task.pending_reason = None
        self.journal.task(task, reason, message)
        assert self._view is not None
        if self._view.state is JobState.ACCEPTED:
            self._set_state(JobState.RUNNING)

    def _finish(self, counts: dict[str, int], failed: list[TaskView]) -> None:
        """End the job from its tasks' ``counts`` by state and (some of) its ``failed`` tasks."""
        assert self._view is not None
        if self._job_kill_requested:
            state, message = JobState.KILLED, "killed by request"
        else:
            state, message = batch_job_ending(counts, failed)
        self._view.message = message
        self._view.finished_at = workflow.now()
        self._set_state(state)

    def _set_state(self, state: JobState) -> None:
        assert self._view is not None
        if self._view.state is state:
            return
        self._view.state = state
        self.journal.job_state(state, self._view.message)
        # Only jobs started with the attribute (all the client starts) keep it
        # current, so the workflow also runs on servers without it registered.
        if workflow.info().typed_search_attributes.get(visibility.JOB_STATE) is not None:
            workflow.upsert_search_attributes([visibility.JOB_STATE.value_set(state.value)])

    def _refresh_pending_reasons(self) -> None:
        assert self._mailbox is not None
        for task_id, reason in self._mailbox.pending_reasons.items():
            task = self._tasks.get(task_id)
            if task is not None:
                task.pending_reason = reason
