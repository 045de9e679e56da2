"""Pieces the job workflows share: activity options and the scheduler mailbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from titus_flow.contracts import (
        Placed,
        PlacementItem,
        PlacementRequest,
        PlacementUpdate,
        ReleaseRequest,
        Unplaced,
    )


def scheduler_workflow_id(control_task_queue: str) -> str:
    """Id of the scheduler workflow of the cluster served on ``control_task_queue``.

    One scheduler per control queue, so several clusters (or test runs) can share
    one Temporal namespace without sharing capacity.
    """
    return f"{control_task_queue}-scheduler"


# An agent that does not pick up an activity for this long is presumed gone.
AGENT_LOST_AFTER = timedelta(seconds=30)
# A supervising agent that stops heartbeating for this long is presumed gone;
# the supervise activity is then retried (re-adopting the container) on the
# agent's queue until AGENT_LOST_AFTER passes with nobody picking it up.
SUPERVISE_HEARTBEAT_TIMEOUT = timedelta(seconds=10)

LAUNCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=["ImageNotFound"],
)
SUPERVISE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=20)


class SchedulerMailbox:
    """Batches a workflow's capacity requests and releases into few signals.

    Every task coroutine calls :meth:`reserve` / :meth:`release`; one flusher
    coroutine sends whatever accumulated during a workflow task as a single
    signal, so a thousand tasks cost one round trip, not a thousand.
    """

    def __init__(self, requester: str) -> None:
        self._requester = requester
        self._requests: list[PlacementItem] = []
        self._releases: list[str] = []
        self._waiting: dict[str, asyncio.Future[Placed | Unplaced]] = {}
        self.pending_reasons: dict[str, str] = {}
        self._closed = False

    async def reserve(self, item: PlacementItem) -> Placed | Unplaced:
        """Wait until ``item`` is placed (Placed) or rejected for good (Unplaced)."""
        future: asyncio.Future[Placed | Unplaced] = asyncio.get_running_loop().create_future()
        self._waiting[item.key] = future
        self._requests.append(item)
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
        self._releases.append(key)

    def on_update(self, update: PlacementUpdate) -> None:
        """Handle the scheduler's answer (called from the signal handler)."""
        for placed in update.placed:
            future = self._waiting.get(placed.key)
            if future is None or future.done():
                self.release(placed.key)  # nobody waits for it any more
            else:
                future.set_result(placed)
        for rejected in update.rejected:
            future = self._waiting.get(rejected.key)
            if future is not None and not future.done():
                future.set_result(rejected)
        for pending in update.pending:
            if pending.key in self._waiting:
                self.pending_reasons[pending.key] = pending.reason

    def close(self) -> None:
        """Let :meth:`run` return once everything queued is sent."""
        self._closed = True

    async def run(self) -> None:
        """Flush queued requests and releases as signals until closed."""
        scheduler = workflow.get_external_workflow_handle(
            scheduler_workflow_id(workflow.info().task_queue)
        )
        while True:
            await workflow.wait_condition(
                lambda: bool(self._requests or self._releases) or self._closed
            )
            if not (self._requests or self._releases):
                return
            if self._releases:
                releases, self._releases = self._releases, []
                await scheduler.signal(
                    "release", ReleaseRequest(requester=self._requester, keys=releases)
                )
            if self._requests:
                requests, self._requests = self._requests, []
                await scheduler.signal(
                    "request_placement",
                    PlacementRequest(requester=self._requester, items=requests),
                )
