"""Which targets a service job's groups should hold, and what to change to get there.

Pure functions over :class:`~titus_flow.contracts.load_balancers.LoadBalancersView`,
the job workflow's record of its targets (:mod:`titus_flow.workflows.service_targets`
applies them). A task is *wanted* in a group while it is Started, healthy, not
being stopped, and its revision's spec lists the group. Registration follows
wanting; deregistration always comes before the task is stopped (the workflow
waits the group's drain after it). The reconciler compares the record with what
AWS holds (:func:`drift`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from titus_flow.contracts.load_balancers import (
    Endpoint,
    LoadBalancersView,
    RegisteredTarget,
    TargetGroupView,
    TargetState,
    TargetView,
)
from titus_flow.spec.load_balancers import is_local

LOCAL_DRAIN = timedelta(seconds=2)
"""The deregistration delay of a ``local:`` group: the proxy polls every 0.5 s."""

LOCAL_TARGET = "127.0.0.1"
"""The address of a task in a ``local:`` group: agents publish ports on loopback."""

DEREGISTERED_KEPT = 20
"""Deregistered targets of finished tasks a group keeps (shown, and checked for drift)."""

SERVING = frozenset({TargetState.REGISTERING, TargetState.REGISTERED})
_UNREGISTERED = frozenset({TargetState.REGISTERING, TargetState.DEREGISTERED})


@dataclass(frozen=True)
class Wanted:
    """A task that should be registered now: where it runs and in which groups."""

    task_id: str
    agent_id: str
    port: int
    groups: frozenset[str]


@dataclass(frozen=True)
class GroupChange:
    """What one group must do in one pass: register new endpoints, deregister targets."""

    target_group: str
    register: tuple[Endpoint, ...] = ()
    deregister: tuple[TargetView, ...] = ()


@dataclass
class Drift:
    """How AWS differs from the record: targets it lost, targets it should not hold."""

    missing: list[TargetView] = field(default_factory=list)
    extra: list[RegisteredTarget] = field(default_factory=list)


def ensure_groups(
    view: LoadBalancersView, groups: Iterable[str], drains: Mapping[str, timedelta]
) -> None:
    """Add the groups of ``groups`` the view lacks (local ones drain :data:`LOCAL_DRAIN`).

    An AWS group without a known drain is left out until it is described.
    """
    known = {g.target_group for g in view.groups}
    for name in groups:
        if name in known:
            continue
        drain = LOCAL_DRAIN if is_local(name) else drains.get(name)
        if drain is not None:
            view.groups.append(TargetGroupView(target_group=name, drain=drain, targets=[]))
            known.add(name)


def group(view: LoadBalancersView, name: str) -> TargetGroupView | None:
    """The group called ``name`` in the view, if it is there."""
    return next((g for g in view.groups if g.target_group == name), None)


def changes(view: LoadBalancersView, wanted: Mapping[str, Wanted]) -> list[GroupChange]:
    """Per group: the wanted tasks not registered yet, the serving targets no longer wanted.

    A target still ``registering`` when this runs is one whose registration
    failed (the workflow makes one call at a time): it is tried again. A
    draining target is left to finish its drain even if its task is wanted
    again (it turned healthy again): it registers anew once deregistered.
    """
    found = []
    for g in view.groups:
        rows = {t.task_id: t for t in g.targets}
        register = tuple(
            Endpoint(task_id=w.task_id, agent_id=w.agent_id, port=w.port)
            for w in wanted.values()
            if g.target_group in w.groups
            and (rows.get(w.task_id) is None or rows[w.task_id].state in _UNREGISTERED)
        )
        deregister = tuple(
            t
            for t in g.targets
            if t.state in SERVING
            and (t.task_id not in wanted or g.target_group not in wanted[t.task_id].groups)
        )
        if register or deregister:
            found.append(GroupChange(g.target_group, register, deregister))
    return found


def set_state(g: TargetGroupView, targets: Iterable[TargetView], state: TargetState) -> None:
    """Record ``targets`` (new rows or existing ones, by task) in ``state``."""
    for target in targets:
        row = next((t for t in g.targets if t.task_id == target.task_id), None)
        if row is None:
            g.targets.append(target.model_copy(update={"state": state}))
        else:
            row.target, row.port, row.state = target.target, target.port, state


def local_targets(endpoints: Sequence[Endpoint]) -> list[TargetView]:
    """The targets of ``endpoints`` in a local group: loopback, the task's host port."""
    return [
        TargetView(
            task_id=e.task_id, target=LOCAL_TARGET, port=e.port, state=TargetState.REGISTERING
        )
        for e in endpoints
    ]


def of_task(view: LoadBalancersView, task_id: str) -> list[tuple[TargetGroupView, TargetView]]:
    """Every (group, target) row of one task."""
    return [(g, t) for g in view.groups for t in g.targets if t.task_id == task_id]


def serving(view: LoadBalancersView, task_id: str) -> bool:
    """Whether any group routes (or is about to route) to the task."""
    return any(t.state in SERVING for _, t in of_task(view, task_id))


def drain_of(view: LoadBalancersView, task_ids: Iterable[str] | None = None) -> timedelta:
    """The longest drain among the groups where the tasks (None: any task) are draining."""
    wanted = None if task_ids is None else set(task_ids)
    return max(
        (
            g.drain
            for g in view.groups
            for t in g.targets
            if t.state is TargetState.DRAINING and (wanted is None or t.task_id in wanted)
        ),
        default=timedelta(0),
    )


def drained(view: LoadBalancersView, task_ids: Iterable[str] | None = None) -> None:
    """Draining targets of the tasks (None: every task) are deregistered now."""
    wanted = None if task_ids is None else set(task_ids)
    for g in view.groups:
        for t in g.targets:
            if t.state is TargetState.DRAINING and (wanted is None or t.task_id in wanted):
                t.state = TargetState.DEREGISTERED


def prune(view: LoadBalancersView, live: Iterable[str]) -> None:
    """Keep rows of live tasks, and the last :data:`DEREGISTERED_KEPT` of finished ones.

    A finished task's row goes only once deregistered: its deregistration may
    still be on its way.
    """
    alive = set(live)
    for g in view.groups:
        gone = [
            t for t in g.targets if t.task_id not in alive and t.state is TargetState.DEREGISTERED
        ]
        dropped = {id(t) for t in gone[: max(len(gone) - DEREGISTERED_KEPT, 0)]}
        g.targets = [t for t in g.targets if id(t) not in dropped]


def drift(g: TargetGroupView, actual: Sequence[RegisteredTarget]) -> Drift:
    """Compare a group's record with the targets AWS holds (``describe_target_health``).

    Missing: registered in the record, absent in AWS (removed by hand): register
    again. Extra: a target AWS serves that the record says was deregistered
    (registered again by hand, or a lost call), and no serving row claims:
    deregister it. Targets the job never registered are left alone: a group may
    serve others too.
    """
    held = {(a.target, a.port) for a in actual if not a.draining}
    claimed = {(t.target, t.port) for t in g.targets if t.state in SERVING}
    missing = [
        t for t in g.targets if t.state is TargetState.REGISTERED and (t.target, t.port) not in held
    ]
    ours_before = {
        (t.target, t.port)
        for t in g.targets
        if t.state in (TargetState.DRAINING, TargetState.DEREGISTERED)
    }
    extra = [
        a
        for a in actual
        if not a.draining
        and (a.target, a.port) in ours_before
        and (a.target, a.port) not in claimed
    ]
    return Drift(missing=missing, extra=extra)


def strays(extra: Sequence[RegisteredTarget]) -> list[TargetView]:
    """Targets AWS holds that the job had deregistered, as rows to deregister again."""
    return [
        TargetView(task_id="", target=a.target, port=a.port, state=TargetState.DEREGISTERED)
        for a in extra
    ]


def registration_states(view: LoadBalancersView) -> dict[str, str]:
    """Each task's state in the job's groups, as ``job describe`` shows it.

    One word when its groups agree (the usual case), else one per group in order.
    """
    states: dict[str, list[str]] = {}
    for g in view.groups:
        for t in g.targets:
            if t.task_id:
                states.setdefault(t.task_id, []).append(t.state.value)
    return {task: s[0] if len(set(s)) == 1 else ",".join(s) for task, s in states.items()}
