"""The scheduler workflow: the durable home of the capacity ledger.

One instance (id ``titus-scheduler``) per namespace. Agents register with it;
job workflows signal batches of placement requests and releases; each workflow
task that brings news runs one scheduling iteration over everything pending and
signals each requester one answer. The ledger survives worker and server
restarts because it lives in this workflow's state, carried across
continue-as-new.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow.contracts import AgentInfo, AgentView, PlacementRequest, ReleaseRequest
    from titus_flow.ledger import Ledger, LedgerState


@workflow.defn(name="Scheduler")
class SchedulerWorkflow:
    """Owns the capacity ledger and runs scheduling iterations."""

    def __init__(self) -> None:
        self._ledger = Ledger()
        self._dirty = False

    @workflow.run
    async def run(self, state: LedgerState | None = None) -> None:
        """Serve requests until the history is long, then continue as new."""
        if state is not None:
            self._ledger = Ledger(state)
            self._dirty = bool(state.pending)
        while True:
            await workflow.wait_condition(
                lambda: self._dirty or workflow.info().is_continue_as_new_suggested()
            )
            if self._dirty:
                self._dirty = False
                await self._iterate()
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._dirty:
                    workflow.continue_as_new(self._ledger.state)

    async def _iterate(self) -> None:
        updates = self._ledger.iterate()
        requesters = list(updates)
        results = await asyncio.gather(
            *(
                workflow.get_external_workflow_handle(r).signal("placement_update", updates[r])
                for r in requesters
            ),
            return_exceptions=True,
        )
        for requester, result in zip(requesters, results, strict=True):
            if isinstance(result, BaseException):
                # The requester has ended: nothing it holds can ever be released by it.
                workflow.logger.info("requester %s gone: releasing its capacity", requester)
                self._ledger.release_requester(requester)
                self._dirty = True

    @workflow.signal(name="register_agent")
    def register_agent(self, info: AgentInfo) -> None:
        """An agent (re)joins the cluster."""
        self._ledger.register(info, workflow.now())
        self._dirty = True

    @workflow.signal(name="request_placement")
    def request_placement(self, request: PlacementRequest) -> None:
        """A job asks capacity for a batch of tasks."""
        self._ledger.request(request)
        self._dirty = True

    @workflow.signal(name="release")
    def release(self, request: ReleaseRequest) -> None:
        """A job gives capacity back (or withdraws requests)."""
        self._ledger.release(request)
        self._dirty = True

    @workflow.query(name="agents")
    def agents(self) -> list[AgentView]:
        """Every agent with its reserved capacity and tasks."""
        return self._ledger.agent_views()
