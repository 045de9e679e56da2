"""The signal by which the scheduler answers the workflows that ask it for capacity.

Its own module so the scheduler workflow can send it by typed reference,
``PlacementRequester.placement_update``, without importing the job workflows:
they import :mod:`~titus_flow.workflows.common`, whose mailbox signals the
scheduler by typed reference to :class:`SchedulerWorkflow`'s methods, so the
scheduler importing them would close an import cycle.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow.contracts import PlacementUpdate


class PlacementRequester:
    """Base of the workflows that ask the scheduler for capacity.

    Defines the ``placement_update`` signal handler; each subclass says what
    it does with the update in :meth:`on_placement_update`. The batch and
    service job workflows subclass it.
    """

    @workflow.signal(name="placement_update")
    def placement_update(self, update: PlacementUpdate) -> None:
        """The scheduler's answer to this job's capacity requests."""
        self.on_placement_update(update)

    def on_placement_update(self, update: PlacementUpdate) -> None:
        """Take the scheduler's placements, refusals and evictions."""
        raise NotImplementedError
