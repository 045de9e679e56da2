"""The event journal a job workflow keeps, and the ``events`` query that reads it.

A job workflow (batch root, partition, service) holds a :class:`JobJournal`
and subclasses :class:`Journaling`. Its state-change points call the
journal's methods: each appends a typed event (in memory only: nothing in
history, no command, so replay rebuilds the same journal) and counts the
workflow-side metrics of issue #15 (the workflow meter records nothing on
replay). Readers poll the ``events`` query (:mod:`titus_flow.client.events`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Generic, TypeVar, cast

from temporalio import workflow
from temporalio.common import MetricCounter, MetricHistogramFloat

with workflow.unsafe.imports_passed_through():
    from titus_flow import metrics as names
    from titus_flow.events import (
        CARRIED_EVENTS,
        EventKind,
        EventPage,
        EventQuery,
        EventTail,
        Journal,
    )
    from titus_flow.events.labels import ACCEPTED_TO_LAUNCHED, LAUNCHED_TO_STARTED, bounded_labels
    from titus_flow.lifecycle import FinishReason, JobState, TaskState
    from titus_flow.views import TaskView


class MeteredJournal(Journal):
    """A journal whose workflow also emits metrics (bounded labels only)."""

    def __init__(self, job_id: str | None = None, tail: EventTail | None = None) -> None:
        super().__init__(job_id, tail)
        self._counters: dict[str, MetricCounter] = {}

    def _count(self, name: str, n: int = 1, **labels: str) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = workflow.metric_meter().create_counter(name)
        counter.add(n, bounded_labels(**labels))

    def _observe(self, name: str, took: timedelta, **labels: str) -> None:
        histogram: MetricHistogramFloat = workflow.metric_meter().create_histogram_float(
            name, "seconds", names.SECONDS
        )
        histogram.record(max(0.0, took.total_seconds()), bounded_labels(**labels))

    def _gauge(self, name: str, value: float, **labels: str) -> None:
        gauge = workflow.metric_meter().create_gauge_float(name)
        gauge.set(value, bounded_labels(**labels))


class JobJournal(MeteredJournal):
    """A job workflow's journal: job and task events, with their metrics.

    A partition (``part``) journals its tasks only; its job's root journals
    the job's own events.
    """

    def __init__(
        self, job_id: str, job_type: str, tail: EventTail | None = None, part: bool = False
    ) -> None:
        super().__init__(job_id, tail)
        self.job_type = job_type
        # The job's state as its workflow last set it (carried across continue-as-new).
        self.state = JobState(tail.state) if tail and tail.state else JobState.ACCEPTED
        self.parts: list[str] = []  # the workflows of the job's partitions, if any
        self._part = part
        self._accepted_at: dict[str, datetime] = {}  # live tasks: when they last became Accepted

    def accepted(self, tasks: list[TaskView], message: str) -> None:
        """A new job (or partition) and its tasks, all Accepted."""
        now = workflow.now()
        if not self._part:
            self.append(now, EventKind.JOB_ACCEPTED, state=JobState.ACCEPTED, message=message)
            self._count(names.JOBS_SUBMITTED, job_type=self.job_type)
        for task in tasks:
            self.task(task)

    def job_state(self, state: JobState, message: str = "") -> None:
        """The job moved to ``state``."""
        self.state = state
        if self._part:
            return
        kind = EventKind.JOB_FINISHED if state.is_final else EventKind.JOB_STATE
        self.append(workflow.now(), kind, state=state, message=message)
        if state.is_final:
            self._count(names.JOBS_FINISHED, job_type=self.job_type, state=state.value)

    def task(self, task: TaskView, reason: FinishReason | None = None, message: str = "") -> None:
        """``task`` moved to the state its view shows (``reason``: why, if it says)."""
        now = workflow.now()
        reason = reason or (task.reason if task.state is TaskState.FINISHED else None)
        self.append(
            now,
            EventKind.TASK_STATE,
            task_id=task.id,
            state=task.state,
            reason=reason,
            attempt=task.attempt or None,
            agent=task.agent,
            message=message,
        )
        self._count(
            names.TASK_TRANSITIONS, job_type=self.job_type, state=task.state, reason=reason or ""
        )
        if reason is FinishReason.OOM_KILLED:  # each attempt's end is one event: counted once
            self._count(names.OOM_KILLS, job_type=self.job_type)
        self._observe_latency(task, now)

    def health(self, task: TaskView) -> None:
        """``task``'s health check passed or failed (``task.healthy``, ``task.message``)."""
        healthy = bool(task.healthy)
        self.append(
            workflow.now(),
            EventKind.TASK_HEALTH,
            task_id=task.id,
            state="healthy" if healthy else "unhealthy",
            attempt=task.attempt or None,
            agent=task.agent,
            message=task.message,
        )
        if not healthy:
            self._count(names.HEALTH_CHECK_FAILURES, job_type=self.job_type)

    def rolling_update(self, phase: str, tasks: int = 1) -> None:
        """Count ``tasks`` in a rolling update's ``phase`` (started, retired, rolled_back)."""
        if tasks:
            self._count(names.ROLLING_UPDATE_TASKS, tasks, phase=phase)

    def scaling(self, message: str) -> None:
        """A scaling decision: a new desired size, or tasks the job starts or stops."""
        self.append(workflow.now(), EventKind.SCALING, message=message)

    def attempt_ended(self, task: TaskView, reason: FinishReason, retry: timedelta | None) -> None:
        """The task's attempt ended for ``reason``; ``retry``: the delay before the next one."""
        if retry is not None:
            self._count(names.TASK_RETRIES, job_type=self.job_type, reason=reason.value)
            self.task(task, reason, f"attempt {task.attempt} ended: retry in {retry}")

    def page(self, query: EventQuery) -> EventPage:
        """A page of events, with the job's state, whether it ended, and its partitions."""
        page = super().page(query)
        page.state, page.ended, page.parts = self.state, self.state.is_final, self.parts
        return page

    def tail(self, count: int = CARRIED_EVENTS) -> EventTail:
        """The journal's end and the job's state, for the next run."""
        return super().tail(count).model_copy(update={"state": self.state})

    def _observe_latency(self, task: TaskView, now: datetime) -> None:
        if task.state is TaskState.ACCEPTED:
            self._accepted_at[task.id] = now
        elif task.state is TaskState.LAUNCHED and task.id in self._accepted_at:
            waited = now - self._accepted_at.pop(task.id)
            self._latency(ACCEPTED_TO_LAUNCHED, waited)
        elif task.state is TaskState.STARTED and task.attempts:
            attempt = task.attempts[-1]
            if attempt.launched_at is not None and attempt.started_at is not None:
                self._latency(LAUNCHED_TO_STARTED, attempt.started_at - attempt.launched_at)
        elif task.state is TaskState.FINISHED:
            self._accepted_at.pop(task.id, None)

    def _latency(self, transition: str, took: timedelta) -> None:
        name = names.TASK_TRANSITION_LATENCY
        self._observe(name, took, job_type=self.job_type, transition=transition)


J = TypeVar("J", bound=Journal)


class Journaling(Generic[J]):
    """Base of the workflows that keep a journal (of type ``J``): the ``events`` query reads it."""

    journal: J

    @workflow.query(name="events")
    def events(self, query: EventQuery) -> EventPage:
        """The journal's events after ``query.after`` (a page), and whether more will come."""
        return self.journal.page(query)


def current_journal() -> JobJournal:
    """The job journal of the workflow this code runs in (for helpers outside its class)."""
    return cast(Journaling[JobJournal], workflow.instance()).journal


__all__ = ["JobJournal", "Journaling", "current_journal"]
