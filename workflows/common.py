"""Pieces the job workflows share: activity options and the scheduler mailbox."""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ExternalWorkflowHandle

with workflow.unsafe.imports_passed_through():
    from titus_flow.cluster import scheduler_workflow_id
    from titus_flow.contracts import (
        ItemGroup,
        Placed,
        PlacementItem,
        PlacementRequest,
        PlacementUpdate,
        ReleaseRequest,
        Unplaced,
    )
    from titus_flow.workflows.scheduler import SchedulerWorkflow


LAUNCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=["ImageNotFound"],
)
SUPERVISE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=20)


MAILBOX_PATCH = "scheduler-mailbox-in-order"
"""``workflow.patched`` id of the mailbox that sends a task's release before its
next request and hands out at most :data:`PLACEMENTS_PER_WORKFLOW_TASK`
placements per workflow task. Runs started before it replay the previous one."""

PLACEMENTS_PER_WORKFLOW_TASK = 50
"""Most placements a job acts on (launches) in one workflow task. A scheduler
answer placing a whole 500-task partition made one workflow task schedule 500
launches: seconds of CPU under load, long enough for the server to force the
task closed and the worker to replay the whole history. The rest of an answer
follows in the next workflow tasks."""

# How long the mailbox sleeps before handing out more placements when nothing
# else wakes the workflow: a timer only to get a new workflow task.
_NEXT_WORKFLOW_TASK = timedelta(milliseconds=1)


class SchedulerMailbox:
    """Batches a workflow's capacity requests and releases into few signals.

    Every task coroutine calls :meth:`reserve` / :meth:`release`; one flusher
    coroutine (:meth:`run`) sends whatever accumulated during a workflow task as
    at most two signals, so a thousand tasks cost one round trip, not a thousand.

    Order matters: the scheduler's ledger ignores a request for a key it still
    holds reserved, so a task's release must reach it before the task's next
    request (a retry). The flusher therefore takes both queues at once and sends
    releases first, and a release withdraws a request of its key not sent yet.
    Before this (:data:`MAILBOX_PATCH`), a retry queued while the flusher awaited
    a signal could overtake the release of the attempt before it, and the task
    waited for a placement forever.
    """

    def __init__(self, requester: str) -> None:
        self._requester = requester
        self._requests: dict[str, PlacementItem] = {}  # not sent yet, in order
        self._releases: list[str] = []
        self._waiting: dict[str, asyncio.Future[Placed | Unplaced]] = {}
        self._placed: deque[Placed] = deque()  # not handed to their tasks yet
        self.pending_reasons: dict[str, str] = {}
        self._closed = False
        self._ordered: bool | None = None
        self._sending = False  # a signal is on its way
        self._held = False

    def hold(self, held: bool = True) -> None:
        """Send nothing more, and hand out no placement, while ``held``.

        For a run about to continue as new: once no signal is on its way
        (:attr:`idle`), the next run sends :meth:`unsent_releases` itself.
        """
        self._held = held

    @property
    def idle(self) -> bool:
        """Whether no signal is on its way to the scheduler."""
        return not self._sending

    def unsent_releases(self) -> list[str]:
        """Keys to give back that were not sent: releases, and placements not handed out."""
        return [*self._releases, *(placed.key for placed in self._placed)]

    @property
    def _in_order(self) -> bool:
        """Whether this run uses the in-order, paced mailbox (decided on first use)."""
        if self._ordered is None:
            self._ordered = workflow.patched(MAILBOX_PATCH)
        return self._ordered

    async def reserve(self, item: PlacementItem) -> Placed | Unplaced:
        """Wait until ``item`` is placed (Placed) or rejected for good (Unplaced)."""
        future: asyncio.Future[Placed | Unplaced] = asyncio.get_running_loop().create_future()
        self._waiting[item.key] = future
        self._requests[item.key] = item
        try:
            return await future
        except asyncio.CancelledError:
            # Withdraw the request, or give back a placement that raced the cancel.
            self.release(item.key)
            raise
        finally:
            self._waiting.pop(item.key, None)
            self.pending_reasons.pop(item.key, None)

    def release(self, key: str) -> None:
        """Give back the reservation of ``key`` (sent with the next flush)."""
        if self._in_order:
            self._requests.pop(key, None)  # never sent: nothing to overtake
        self._releases.append(key)

    def on_update(self, update: PlacementUpdate) -> None:
        """Handle the scheduler's answer (called from the signal handler)."""
        if self._in_order:
            self._placed.extend(update.placed)  # handed out by run(), a batch per task
        else:
            for placed in update.placed:
                self._hand_out(placed)
        for rejected in update.rejected:
            future = self._waiting.get(rejected.key)
            if future is not None and not future.done():
                future.set_result(rejected)
        for pending in update.pending:
            if pending.key in self._waiting:
                self.pending_reasons[pending.key] = pending.reason

    def _hand_out(self, placed: Placed) -> None:
        future = self._waiting.get(placed.key)
        if future is None or future.done():
            self.release(placed.key)  # nobody waits for it any more
        else:
            future.set_result(placed)

    def close(self) -> None:
        """Let :meth:`run` return once everything queued is sent."""
        self._closed = True

    async def run(self) -> None:
        """Flush queued requests and releases as signals until closed."""
        scheduler = workflow.get_external_workflow_handle_for(
            SchedulerWorkflow.run, scheduler_workflow_id(workflow.info().task_queue)
        )
        if not self._in_order:
            await self._run_unordered(scheduler)
            return
        while True:
            await workflow.wait_condition(
                lambda: (
                    (bool(self._requests or self._releases or self._placed) and not self._held)
                    or self._closed
                )
            )
            if self._closed:
                # The run is ending (or continuing as new): placements nobody
                # took go back; their tasks, if carried over, ask again.
                while self._placed:
                    self.release(self._placed.popleft().key)
            for _ in range(min(len(self._placed), PLACEMENTS_PER_WORKFLOW_TASK)):
                self._hand_out(self._placed.popleft())
            if not (self._requests or self._releases or self._placed):
                if self._closed:
                    return
                continue
            releases, self._releases = self._releases, []
            requests, self._requests = list(self._requests.values()), {}
            self._sending = True
            if releases:
                await scheduler.signal(
                    SchedulerWorkflow.release,
                    ReleaseRequest(requester=self._requester, keys=releases),
                )
            if requests:
                # Grouped: one spec and compact keys for a job's identical tasks.
                await scheduler.signal(
                    SchedulerWorkflow.request_placement,
                    PlacementRequest(requester=self._requester, groups=ItemGroup.of(requests)),
                )
            self._sending = False
            if self._placed and not (releases or requests):
                await workflow.sleep(_NEXT_WORKFLOW_TASK)

    async def _run_unordered(self, scheduler: ExternalWorkflowHandle[SchedulerWorkflow]) -> None:
        """The mailbox of runs started before :data:`MAILBOX_PATCH`, kept for their replay."""
        while True:
            await workflow.wait_condition(
                lambda: bool(self._requests or self._releases) or self._closed
            )
            if not (self._requests or self._releases):
                return
            if self._releases:
                releases, self._releases = self._releases, []
                await scheduler.signal(
                    SchedulerWorkflow.release,
                    ReleaseRequest(requester=self._requester, keys=releases),
                )
            if self._requests:
                requests, self._requests = list(self._requests.values()), {}
                await scheduler.signal(
                    SchedulerWorkflow.request_placement,
                    PlacementRequest(requester=self._requester, items=requests),
                )
