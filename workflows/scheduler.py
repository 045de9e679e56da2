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
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from titus_flow.activities.control import ControlActivities
    from titus_flow.cluster import AGENT_SILENCE, LIVENESS_EVERY
    from titus_flow.contracts import (
        AgentInfo,
        AgentView,
        CapacityGroupView,
        PlacementRequest,
        PutCapacityGroup,
        ReleaseRequest,
    )
    from titus_flow.fleet.messages import (
        ClusterDemand,
        DemandQuery,
        FleetCapacity,
    )
    from titus_flow.ledger import CarriedLedger, Ledger, LedgerState
    from titus_flow.scheduler.queries import AgentQuery, AgentTasks, AgentTasksQuery
    from titus_flow.spec.capacity_group import DEFAULT_GROUP
    from titus_flow.workflows.cluster_journal import ClusterJournal
    from titus_flow.workflows.journal import Journaling
    from titus_flow.workflows.requester import PlacementRequester

LEDGER_PATCH = "ledger-answers-requests-for-held-keys"
"""``workflow.patched`` id of the ledger answering a request for a key its requester
still holds (:meth:`~titus_flow.ledger.Ledger.request`): runs started before it
replay without those answers."""

BOUNDED_PATCH = "scheduler-bounded"
"""``workflow.patched`` id of the bounded scheduler (issue 11): agent liveness from
their task queues' pollers, one timer to the next deadline, the ledger carried in
compact form with a size check. Runs started before it keep the previous
behaviour (re-registration signals as heartbeats, a 15 s tick) until they
continue as new; the ``renew`` signal (sent by every control worker as it
starts) makes such a run continue as new at once."""

SHORT_HISTORY_PATCH = "scheduler-short-history"
"""``workflow.patched`` id of the scheduler continuing as new past
:data:`HISTORY_EVENTS` events, not only when Temporal suggests it (~4,000 here):
a worker that must replay the whole history (a restart, a cache eviction, a
timed-out task) does so within one workflow task's CPU budget of 1 s (issue
11: 2,300 events with 1,000 agents replayed in 1.3 s). Runs started before it
continue as new when Temporal suggests it."""
HISTORY_EVENTS = 1_000

PAGED_HOUSEKEEPING_PATCH = "scheduler-housekeeping-pages"
"""``workflow.patched`` id of housekeeping activities asked in pages of at most
:data:`HOUSEKEEPING_PAGE` names (issue 11): one call carried every agent's task
queue (~45 KB at 1,000 agents, past Temporal's 512 KiB warning near 10,000) and
every requester holding capacity. Runs started before it ask in one call."""
HOUSEKEEPING_PAGE = 500

# How often the ledger looks for jobs that ended without releasing capacity.
GC_EVERY = timedelta(seconds=60)
# Housekeeping tick; runs before BOUNDED_PATCH: agents re-register every 15 s.
HOUSEKEEPING_EVERY = timedelta(seconds=15)

GC_EVERY_BOUNDED = timedelta(minutes=2)

CARRY_WARN_BYTES = 512 * 1024
"""Temporal's payload warning: carried ledgers above it are logged."""
CARRY_LIMIT_BYTES = 3 * 512 * 1024
"""The most the scheduler carries across continue-as-new; Temporal refuses
payloads over 2 MB. Past it the scheduler fails (never continues with a partial
ledger): ~100,000 reserved tasks in the compact form."""


@workflow.defn(name="Scheduler", sandboxed=False)
class SchedulerWorkflow(Journaling[ClusterJournal]):
    """Owns the capacity ledger and runs scheduling iterations."""

    @workflow.init
    def __init__(self, state: LedgerState | CarriedLedger | None = None) -> None:
        # From the input here, not in run(): signals that come with the first
        # workflow task (an agent's signal-with-start, requests right after a
        # continue-as-new) are handled before run() starts.
        self.journal = ClusterJournal(state.events if isinstance(state, CarriedLedger) else None)
        if isinstance(state, CarriedLedger):
            state = state.expand()
        self._ledger = Ledger(state, answer_held=workflow.patched(LEDGER_PATCH))
        self._bounded = workflow.patched(BOUNDED_PATCH)
        self._history_events = HISTORY_EVENTS if workflow.patched(SHORT_HISTORY_PATCH) else None
        self._page = HOUSEKEEPING_PAGE if workflow.patched(PAGED_HOUSEKEEPING_PATCH) else None
        # A continued run looks at its carried ledger once (pending requests,
        # evictions untold): the previous run may have continued mid-change.
        self._dirty = bool(state and (state.pending or self._history_events is not None))
        self._renew = False
        self._next_gc = workflow.now() + (GC_EVERY_BOUNDED if self._bounded else GC_EVERY)
        self._next_housekeeping = workflow.now() + HOUSEKEEPING_EVERY
        self._gc: asyncio.Task[None] | None = None
        self._liveness: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, state: LedgerState | CarriedLedger | None = None) -> None:
        """Serve requests until the history is long, then continue as new."""
        while True:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._dirty or self._renew or self._suggested(),
                    timeout=self._next_wake(),
                )
            # By the clock, not on a quiet timeout: agents' heartbeats alone would
            # keep the loop busy, and a lost agent would never be noticed.
            if workflow.now() >= self._next_housekeeping:
                self._next_housekeeping = workflow.now() + HOUSEKEEPING_EVERY
                self._housekeeping()
            if self._dirty:
                self._dirty = False
                await self._iterate()
            if self._suggested() or self._renew:
                await workflow.wait_condition(workflow.all_handlers_finished)
                for task in (self._gc, self._liveness):
                    if task is not None and not task.done():
                        task.cancel()  # the next run looks again
                # Changes that came meanwhile are in the ledger, which travels:
                # the next run iterates first. Runs before SHORT_HISTORY_PATCH
                # waited for a quiet moment, which a busy cluster may not give
                # (a run of 1,600 events at 10,000 tasks).
                if not self._dirty or self._may_continue_mid_change():
                    workflow.continue_as_new(self._carried())

    def _may_continue_mid_change(self) -> bool:
        return self._history_events is not None and not self._ledger.answers_unsent()

    def _suggested(self) -> bool:
        info = workflow.info()
        limit = self._history_events
        return info.is_continue_as_new_suggested() or (
            limit is not None and info.get_current_history_length() > limit
        )

    def _next_wake(self) -> timedelta | None:
        """How long to sleep when nothing happens.

        A 15 s tick before :data:`BOUNDED_PATCH`; now until the next
        housekeeping, and only if there is something to look after (no timer
        at all for an empty ledger).
        """
        if not self._bounded:
            return HOUSEKEEPING_EVERY
        if not (self._ledger.state.agents or self._ledger.state.reservations):
            return None
        return max(self._next_housekeeping - workflow.now(), timedelta(seconds=1))

    def _carried(self) -> CarriedLedger:
        """The ledger to continue with, in compact form; fails the run if too large."""
        carried = self._ledger.state.compact()
        carried.events = self.journal.tail()
        size = workflow.payload_converter().to_payloads([carried])[0].ByteSize()
        if size > CARRY_LIMIT_BYTES:
            # Loudly, with the ledger intact in this run's state: continuing
            # without part of it would overcommit hosts.
            raise ApplicationError(
                f"the capacity ledger is {size} bytes, over the {CARRY_LIMIT_BYTES} this"
                f" scheduler can carry across continue-as-new"
                f" ({len(self._ledger.state.reservations)} reservations,"
                f" {len(self._ledger.state.pending)} pending, {len(self._ledger.state.agents)}"
                " agents). It is not restarted empty: reset it to an earlier event"
                " (`temporal workflow reset`) after releasing capacity, or delete it to"
                " start over with an empty ledger.",
                type="LedgerTooLarge",
                non_retryable=True,
            )
        if size > CARRY_WARN_BYTES:
            workflow.logger.warning("carrying a %d-byte ledger across continue-as-new", size)
        return carried

    async def _iterate(self) -> None:
        updates = self._ledger.iterate()
        self.journal.placed(updates)
        requesters = list(updates)
        results = await asyncio.gather(
            *(
                workflow.get_external_workflow_handle(r).signal(
                    PlacementRequester.placement_update, updates[r]
                )
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

    def _housekeeping(self) -> None:
        self.journal.gauges(self._ledger.state, self._ledger.capacity_group_views())
        if self._bounded:
            if self._ledger.state.agents and not _running(self._liveness):
                self._liveness = asyncio.create_task(self._check_liveness())
        else:
            self._mark_silent(timedelta(seconds=self._ledger.state.agent_silence_seconds))
        if workflow.now() >= self._next_gc and not _running(self._gc):
            self._next_gc = workflow.now() + (GC_EVERY_BOUNDED if self._bounded else GC_EVERY)
            # In the background: placement never waits for housekeeping.
            self._gc = asyncio.create_task(self._release_closed_requesters())

    def _mark_silent(self, silence: timedelta) -> None:
        lost = self._ledger.mark_silent_agents_lost(workflow.now(), silence)
        self.journal.lost(lost)
        if lost:
            workflow.logger.warning("agents lost (no heartbeat): %s", ", ".join(lost))

    def _pages(self, names: list[str]) -> list[list[str]]:
        """``names`` in the pages housekeeping asks about (one page before the patch)."""
        size = self._page or max(len(names), 1)
        return [names[i : i + size] for i in range(0, len(names), size)]

    async def _check_liveness(self) -> None:
        """Agents seen polling their task queues are alive; the silent ones are lost.

        Activities ask the server for the agents' last polls, a page at a time:
        no history event per agent heartbeat (1,000 agents re-registering every
        15 s made ~4,000 signals a minute in this one history), and no payload
        that grows with the number of agents.
        """
        queues = sorted({r.info.task_queue for r in self._ledger.state.agents.values()})
        answered = True
        for page in self._pages(queues):
            try:
                polled = await workflow.execute_activity_method(
                    ControlActivities.agent_pollers,
                    page,
                    schedule_to_close_timeout=LIVENESS_EVERY,
                    retry_policy=RetryPolicy(maximum_attempts=2),
                    summary="which agents still poll their task queues",
                )
            except ActivityError as err:
                # No answer is no news: nobody is marked lost on it.
                workflow.logger.warning("could not ask which agents poll: %s", err)
                answered = False
                continue
            if self._ledger.saw_polls(polled):
                self._dirty = True  # a lost agent is back
        if answered:
            silence = max(
                AGENT_SILENCE, timedelta(seconds=self._ledger.state.agent_silence_seconds)
            )
            self._mark_silent(silence)

    async def _release_closed_requesters(self) -> None:
        """Free capacity of jobs that ended without releasing it (e.g. terminated)."""
        for page in self._pages(self._ledger.requesters()):
            try:
                closed = await workflow.execute_activity_method(
                    ControlActivities.closed_workflows,
                    page,
                    schedule_to_close_timeout=GC_EVERY,
                    summary="find jobs that ended holding capacity",
                )
            except ActivityError as err:
                workflow.logger.warning("could not look for ended jobs: %s", err)
                return
            for requester in closed:
                self._ledger.release_requester(requester)
            self._dirty = self._dirty or bool(closed)

    @workflow.signal(name="renew")
    def renew(self) -> None:
        """Continue as new soon if this run predates :data:`BOUNDED_PATCH`.

        A control worker of this release sends it as it starts.
        """
        if not self._bounded:
            self._renew = True

    @workflow.signal(name="drain_agent")
    def drain_agent(self, agent_id: str) -> None:
        """Place nothing more on an agent; its service tasks move elsewhere."""
        self._ledger.set_agent_state(agent_id, "draining")
        self.journal.drained(agent_id)
        self._dirty = True  # the next iteration tells the jobs to move their tasks

    @workflow.signal(name="remove_agent")
    def remove_agent(self, agent_id: str) -> None:
        """Forget an agent whose host is gone."""
        self._ledger.remove_agent(agent_id)
        self._dirty = True

    @workflow.query(name="demand")
    def demand(self, query: DemandQuery | None = None) -> ClusterDemand:
        """Pending requests more agents would serve, and agents, for fleets deciding to grow.

        Requests their capacity group holds back are left out: launching for
        them would only make idle instances. Alike requests of a job are one
        entry with a count. ``query.agent_ids`` limits the agents to those.
        """
        agents = self._ledger.agent_views()
        if query is not None and query.agent_ids is not None:
            wanted = set(query.agent_ids)
            agents = [a for a in agents if a.agent_id in wanted]
        return ClusterDemand(
            pending=self._ledger.pending_demand(),
            agents=agents,
            fleets=list(self._ledger.state.fleets.values()),
        )

    @workflow.signal(name="fleet_capacity")
    def fleet_capacity(self, capacity: FleetCapacity) -> None:
        """A fleet's instance shapes and whether it is at its max (no shapes: it is gone)."""
        self._ledger.set_fleet(capacity)
        self._dirty = True

    @workflow.signal(name="register_agent")
    def register_agent(self, info: AgentInfo) -> None:
        """An agent (re)joins the cluster."""
        known = self._ledger.state.agents.get(info.agent_id)
        self.journal.registered(info, known.state if known else None)
        self._ledger.register(info, workflow.now())
        self._dirty = True

    @workflow.signal(name="request_placement")
    def request_placement(self, request: PlacementRequest) -> None:
        """A job asks capacity for a batch of tasks."""
        self._ledger.request(request)
        self.journal.requested(request)
        self._dirty = True

    @workflow.signal(name="release")
    def release(self, request: ReleaseRequest) -> None:
        """A job gives capacity back (or withdraws requests)."""
        self._ledger.release(request)
        self.journal.released(request)
        self._dirty = True

    @workflow.query(name="agents")
    def agents(self, query: AgentQuery | None = None) -> list[AgentView]:
        """A page of agents (``query``; by default the first :data:`AGENTS_PAGE`).

        Each with its reserved capacity and how many tasks hold it; their keys
        are paged by :meth:`agent_tasks`.
        """
        return self._ledger.agent_views(query or AgentQuery())

    @workflow.query(name="agent_tasks")
    def agent_tasks(self, query: AgentTasksQuery) -> AgentTasks:
        """A page of the keys of the tasks holding capacity on one agent."""
        return self._ledger.agent_tasks(query)

    @workflow.update(name="put_capacity_group")
    def put_capacity_group(self, request: PutCapacityGroup) -> CapacityGroupView:
        """Create or replace a capacity group; pending tasks are placed again under it."""
        view = self._ledger.put_capacity_group(request.group)
        self._dirty = True
        return view

    @put_capacity_group.validator
    def _validate_put_capacity_group(self, request: PutCapacityGroup) -> None:
        name = request.group.name
        exists = name in self._ledger.state.capacity_groups
        if request.expect == "new" and exists:
            raise ApplicationError(
                f"capacity group {name!r} already exists;"
                f" change it with `titus-flow capacity-groups update {name}`",
                type="InvalidRequest",
                non_retryable=True,
            )
        # The default group exists implicitly (flex, unlimited) until defined.
        if request.expect == "existing" and not exists and name != DEFAULT_GROUP:
            raise ApplicationError(
                f"no capacity group {name!r};"
                f" create it with `titus-flow capacity-groups create {name}`",
                type="InvalidRequest",
                non_retryable=True,
            )

    @workflow.query(name="capacity_groups")
    def capacity_groups(self) -> list[CapacityGroupView]:
        """Every capacity group (with the implicit default one) and its current usage."""
        return self._ledger.capacity_group_views()


def _running(task: asyncio.Task[None] | None) -> bool:
    return task is not None and not task.done()
