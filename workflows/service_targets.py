"""A service job's load balancer targets: registered once healthy, drained before a stop.

:class:`ServiceTargets` is a base of
:class:`~titus_flow.workflows.service_tasks.ServiceTasks`. Its record is a
:class:`~titus_flow.contracts.load_balancers.LoadBalancersView` kept in the
job's input (so it travels over continue-as-new) and answered by the
``load_balancers`` query. One coroutine (:meth:`ServiceTargets._targets_loop`)
makes every elbv2 call, one at a time, so a task's registration always
completes before its deregistration starts. Whenever the job changes it applies
:func:`~titus_flow.load_balancers.rules.changes`; every ``targets_check`` (only
while the job has AWS groups) it repairs drift. Groups ``local:<name>`` make no
call: they exist in the record only, for the local proxy (``titus-flow lb``).

A task being stopped (kill, scale-in, move, update retire, task kill, job kill)
is deregistered first, then the workflow waits its groups' deregistration delay,
and only then cancels the task's run, which stops its container.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from titus_flow.activities.interfaces import LoadBalancerActivityInterface
    from titus_flow.cluster import scheduler_workflow_id
    from titus_flow.contracts import ServiceJobInput, ServiceTaskRecord
    from titus_flow.contracts.load_balancers import (
        GroupInfo,
        LoadBalancersView,
        RegisterInput,
        TargetGroupView,
        TargetsInput,
        TargetState,
    )
    from titus_flow.lifecycle import FinishReason, TaskState
    from titus_flow.load_balancers import rules
    from titus_flow.load_balancers.rules import GroupChange, Wanted
    from titus_flow.spec import ServiceJob
    from titus_flow.spec.load_balancers import is_local

# ``workflow.patched`` id of "tasks are registered in the job's load balancers
# and drained before they stop". Asked only of jobs that have load balancers.
LOAD_BALANCERS_PATCH = "service-load-balancers"
# ``workflow.patched`` id of "an update that changes load_balancer_check_interval
# changes how often drift is checked" (before: the interval of the submit held).
TARGETS_CHECK_PATCH = "service-targets-check-follows-updates"

# elbv2 calls: retried a few times, then left to the next pass or drift check.
_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=5,
    non_retryable_error_types=["TargetGroupNotFound", "InvalidTarget", "AgentAddressUnknown"],
)
_CALL_TIMEOUT = timedelta(seconds=60)


class ServiceTargets:
    """The load balancer targets of a service job's tasks."""

    _input: ServiceJobInput | None
    _job_id: str
    _live: dict[str, ServiceTaskRecord]
    _runs: dict[str, asyncio.Task[None]]
    _kill_reasons: dict[str, FinishReason]
    _killed: bool

    # Set lazily (the workflow's __init__ is not this module's): the patch's
    # answer, the loop, and whether a pass or a drift check is due.
    _lb_on: bool | None = None
    _lb_loop: asyncio.Task[None] | None = None
    _lb_dirty: bool = False
    _lb_busy: bool = False
    _lb_check_due: bool = False
    _lb_draining: int = 0
    _lb_timer: asyncio.Task[None] | None = None
    _lb_drains: dict[str, asyncio.Task[None]] | None = None  # task id -> its drain
    _lb_settling: set[asyncio.Task[None]] | None = None  # drains of running tasks

    def _spec_of(self, revision: int | None) -> ServiceJob:
        raise NotImplementedError  # ServiceTasks's

    @workflow.query(name="load_balancers")
    def load_balancers(self) -> LoadBalancersView:
        """Every target group of the job and each task's state in it."""
        assert self._input is not None
        return self._input.load_balancers or LoadBalancersView(groups=[])

    # --- hooks of the job workflow ------------------------------------------

    def _targets_changed(self) -> None:
        """The job changed (a task started, turned healthy, is stopping...): look again."""
        if not self._targets_active():
            return
        self._lb_dirty = True
        if self._lb_loop is None:
            self._lb_loop = asyncio.create_task(self._targets_loop())

    def _stop_task_run(self, task_id: str, run: asyncio.Task[None]) -> None:
        """Stop a task's run: at once, or once it is out of its groups and drained."""
        view = self._input.load_balancers if self._input is not None else None
        # A task still draining (it turned unhealthy just before) waits its drain too.
        if (
            not self._lb_on
            or view is None
            or not (rules.serving(view, task_id) or rules.drain_of(view, [task_id]))
        ):
            run.cancel()
            return
        self._lb_dirty = True
        self._lb_draining += 1
        if self._lb_drains is None:
            self._lb_drains = {}
        self._lb_drains[task_id] = asyncio.create_task(
            self._drain_then(lambda: run.cancel(), [task_id])
        )

    async def _targets_settled(self) -> None:
        """Before continuing as new: no call in flight and no task waiting out its drain."""
        if self._lb_on:
            await workflow.wait_condition(lambda: not self._lb_busy and not self._lb_draining)

    async def _drain_all_targets(self) -> None:
        """Before the job's tasks all stop: deregister every target and wait the drain."""
        if self._lb_on and self._input is not None and self._input.load_balancers is not None:
            self._targets_changed()  # the job is killed: nothing is wanted any more
            self._lb_draining += 1
            await self._drain_then(lambda: None, None)

    # --- the rules' inputs ----------------------------------------------------

    def _group_names(self) -> list[str]:
        """The groups of the current spec and of the revision an update replaces."""
        assert self._input is not None
        names = list(self._input.job.load_balancers)
        if self._input.previous is not None:
            names += [g for g in self._input.previous.load_balancers if g not in names]
        return names

    def _targets_active(self) -> bool:
        if self._lb_on is None:
            assert self._input is not None
            if not self._group_names() and self._input.load_balancers is None:
                return False
            self._lb_on = workflow.patched(LOAD_BALANCERS_PATCH)
            if self._lb_on and self._input.load_balancers is None:
                self._input.load_balancers = LoadBalancersView(groups=[])
        return self._lb_on

    def _wanted_targets(self) -> dict[str, Wanted]:
        """The tasks that should be registered now, with their groups and host ports."""
        if self._killed:
            return {}
        wanted = {}
        for record in self._live.values():
            view = record.view
            if (
                view.state is not TaskState.STARTED
                or not view.healthy
                or view.id in self._kill_reasons
                or view.agent is None
            ):
                continue
            spec = self._spec_of(view.revision)
            port = spec.target_port()
            if spec.load_balancers and port is not None and port in record.ports:
                groups = frozenset(spec.load_balancers)
                wanted[view.id] = Wanted(view.id, view.agent, record.ports[port], groups)
        return wanted

    # --- the one coroutine that calls elbv2 ------------------------------------

    async def _targets_loop(self) -> None:
        assert self._input is not None and self._input.load_balancers is not None
        view = self._input.load_balancers
        # A run that took over targets checks them against AWS first.
        self._lb_check_due = any(not is_local(g.target_group) for g in view.groups)
        while True:
            await workflow.wait_condition(lambda: self._lb_dirty or self._lb_check_due)
            self._lb_dirty = False
            self._lb_busy = True
            try:
                await self._describe_new_groups(view)
                aws = any(not is_local(g.target_group) for g in view.groups)
                if aws and self._lb_timer is None:
                    self._lb_timer = asyncio.create_task(self._check_timer())
                for change in rules.changes(view, self._wanted_targets()):
                    await self._apply_change(view, change)
                if self._lb_check_due:
                    self._lb_check_due = False
                    await self._repair_drift(view)
            finally:
                self._lb_busy = False
            rules.prune(view, self._live)

    def _follow_check_interval(self, interval: timedelta) -> None:
        """An update or rollback changed ``load_balancer_check_interval``: use it from now.

        The check timer restarts on the new interval (a shorter one need not wait
        out the old). A replay of a release that kept the interval of the submit
        keeps it (:data:`TARGETS_CHECK_PATCH`).
        """
        assert self._input is not None
        if interval == self._input.targets_check or not workflow.patched(TARGETS_CHECK_PATCH):
            return
        self._input.targets_check = interval
        if self._lb_timer is not None:
            self._lb_timer.cancel()
            self._lb_timer = asyncio.create_task(self._check_timer())

    async def _check_timer(self) -> None:
        assert self._input is not None
        while True:
            await workflow.sleep(self._input.targets_check, summary="check load balancer targets")
            self._lb_check_due = True

    async def _describe_new_groups(self, view: LoadBalancersView) -> None:
        """Add the job's groups the record lacks; AWS ones with their drain from AWS."""
        known = {g.target_group for g in view.groups}
        new = [g for g in self._group_names() if g not in known and not is_local(g)]
        drains: dict[str, timedelta] = {}
        if new:
            infos: list[GroupInfo] = (
                await self._call(
                    LoadBalancerActivityInterface.describe_groups,
                    new,
                    f"describe {len(new)} target group(s)",
                )
                or []
            )
            drains = {i.target_group: i.drain for i in infos}
        rules.ensure_groups(view, self._group_names(), drains)

    async def _apply_change(self, view: LoadBalancersView, change: GroupChange) -> None:
        g = rules.group(view, change.target_group)
        assert g is not None
        rules.set_state(g, change.deregister, TargetState.DRAINING)
        local = is_local(g.target_group)
        if change.deregister and not local:
            await self._call(
                LoadBalancerActivityInterface.deregister_targets,
                TargetsInput(target_group=g.target_group, targets=list(change.deregister)),
                f"deregister {len(change.deregister)} target(s)",
            )
        for target in change.deregister:
            if self._drain_unowned(target.task_id):
                self._lb_draining += 1
                if self._lb_settling is None:
                    self._lb_settling = set()
                settle = asyncio.create_task(self._settle(g, target.task_id))
                self._lb_settling.add(settle)
                settle.add_done_callback(self._lb_settling.discard)
        if not change.register:
            return
        if local:
            rules.set_state(g, rules.local_targets(change.register), TargetState.REGISTERED)
            return
        placeholder = rules.local_targets(change.register)
        for target in placeholder:
            target.target = ""  # its agent's address is looked up by the call
        rules.set_state(g, placeholder, TargetState.REGISTERING)
        registered = await self._call(
            LoadBalancerActivityInterface.register_endpoints,
            RegisterInput(
                target_group=g.target_group,
                scheduler_id=scheduler_workflow_id(workflow.info().task_queue),
                endpoints=list(change.register),
            ),
            f"register {len(change.register)} target(s)",
        )
        if registered is not None:
            rules.set_state(g, registered, TargetState.REGISTERED)

    async def _repair_drift(self, view: LoadBalancersView) -> None:
        for g in [g for g in view.groups if not is_local(g.target_group)]:
            actual = await self._call(
                LoadBalancerActivityInterface.registered_targets,
                g.target_group,
                "check targets",
            )
            if actual is None:
                continue
            drift = rules.drift(g, actual)
            if drift.missing:
                workflow.logger.warning("%s lost %d target(s)", g.target_group, len(drift.missing))
                await self._call(
                    LoadBalancerActivityInterface.register_targets,
                    TargetsInput(target_group=g.target_group, targets=drift.missing),
                    f"register {len(drift.missing)} lost target(s) again",
                )
            if drift.extra:
                workflow.logger.warning(
                    "%s holds %d stray target(s)", g.target_group, len(drift.extra)
                )
                await self._call(
                    LoadBalancerActivityInterface.deregister_targets,
                    TargetsInput(target_group=g.target_group, targets=rules.strays(drift.extra)),
                    f"deregister {len(drift.extra)} stray target(s)",
                )

    async def _call(self, method: Any, arg: Any, summary: str) -> Any:
        """One elbv2 activity; None when it failed for good (the next pass tries again)."""
        try:
            return await workflow.execute_activity_method(
                method,
                arg,
                start_to_close_timeout=_CALL_TIMEOUT,
                retry_policy=_CALL_RETRY,
                summary=summary,
            )
        except ActivityError as err:
            workflow.logger.warning("load balancer call failed (%s): %s", summary, err.cause)
            return None

    # --- draining --------------------------------------------------------------

    def _drain_unowned(self, task_id: str) -> bool:
        """Whether no stop waits out this task's drain (it turned unhealthy, or exited).

        Then no :meth:`_drain_then` ends the drain: :meth:`_settle` does, so the
        target can register again and a finished task's row can be pruned.
        """
        return not self._killed and task_id not in (self._lb_drains or {})

    async def _settle(self, g: TargetGroupView, task_id: str) -> None:
        """End the drain of a target no stop waits for, after ``g``'s delay."""
        try:
            if g.drain > timedelta(0):
                await workflow.sleep(g.drain, summary=f"drain {task_id} from {g.target_group}")
            for target in g.targets:
                if target.task_id == task_id and target.state is TargetState.DRAINING:
                    target.state = TargetState.DEREGISTERED
            self._lb_dirty = True  # if it is healthy again by now: register it again
        finally:
            self._lb_draining -= 1

    async def _drain_then(self, stop: Callable[[], object], task_ids: list[str] | None) -> None:
        """Wait until the tasks' targets are deregistered, wait their drain, then ``stop``."""
        assert self._input is not None and self._input.load_balancers is not None
        view = self._input.load_balancers
        try:
            await workflow.wait_condition(
                lambda: (
                    not self._lb_dirty
                    and not self._lb_busy
                    and not any(
                        t.state in rules.SERVING
                        for g in view.groups
                        for t in g.targets
                        if task_ids is None or t.task_id in task_ids
                    )
                )
            )
            drain = rules.drain_of(view, task_ids)
            if drain > timedelta(0):
                who = "every task" if task_ids is None else task_ids[0]
                await workflow.sleep(drain, summary=f"drain {who} from its load balancers")
            rules.drained(view, task_ids)
        finally:
            self._lb_draining -= 1
            if task_ids and self._lb_drains is not None:
                self._lb_drains.pop(task_ids[0], None)
        stop()
