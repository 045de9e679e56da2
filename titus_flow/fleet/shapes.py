"""A fleet's instance types as the scheduler sees them: agents that do not exist yet.

The fleet workflow tells the scheduler its shapes (:func:`fleet_capacity`, signal
``fleet_capacity``) whenever they or its being at ``max`` change. Placement then
asks :class:`FleetOutlook` about a task no current agent takes: it waits for a
fleet that can launch an instance holding it ("waiting for fleet X to launch a
m5.xlarge"), says when every such fleet is at its max, and only a task that no
agent and no fleet's instance type can ever hold is rejected.

Pure and deterministic: runs inside the scheduler workflow.
"""

from __future__ import annotations

from collections.abc import Sequence

from titus_flow.fleet.messages import FleetCapacity, FleetShape
from titus_flow.fleet.planner import agent_attributes, capacity, ranked_types
from titus_flow.fleet.spec import FleetSpec
from titus_flow.scheduler.filters import Matchers, matches
from titus_flow.scheduler.from_spec import resources_from_spec
from titus_flow.scheduler.model import ReasonCode, ResourceVector, TaskRequest
from titus_flow.spec import Resources

GROUP_REASONS = frozenset({ReasonCode.GROUP_LIMIT, ReasonCode.GUARANTEE_RESERVED})
"""Pending reasons another agent cannot cure: the task's capacity group holds it back."""


def fleet_capacity(spec: FleetSpec, workflow_id: str, *, at_max: bool) -> FleetCapacity:
    """What fleet ``spec`` can add: each type (cheapest first) in each of its zones."""
    zones = list(dict.fromkeys(subnet.zone for subnet in spec.subnets))
    shapes = []
    for instance_type in ranked_types(spec):
        offered = capacity(spec, instance_type)
        resources = Resources(
            cpu=offered.millicores / 1000,
            memory=offered.memory_mib,
            disk=offered.disk_mib,
            network_mbps=offered.network_mbps,
        )
        shapes += [
            FleetShape(
                instance_type=instance_type.name,
                zone=zone,
                resources=resources,
                attributes=agent_attributes(spec, instance_type.name, zone),
            )
            for zone in zones
        ]
    return FleetCapacity(
        fleet=spec.name, workflow_id=workflow_id, shapes=shapes, max=spec.max, at_max=at_max
    )


def fleet_gone(name: str, workflow_id: str) -> FleetCapacity:
    """The message that makes the scheduler forget fleet ``name`` (it launches nothing more)."""
    return FleetCapacity(fleet=name, workflow_id=workflow_id)


class FleetOutlook:
    """What the cluster's fleets can do for tasks; one per placement iteration.

    Answers are cached per (resources, hard attribute rules): the tasks of a
    job share both, so a 10,000-task job costs one look at the shapes.
    """

    def __init__(self, fleets: Sequence[FleetCapacity]) -> None:
        self._fleets = sorted(fleets, key=lambda f: f.fleet)
        self._shapes: list[tuple[FleetCapacity, list[tuple[FleetShape, ResourceVector]]]] = [
            (fleet, [(s, resources_from_spec(s.resources)) for s in fleet.shapes])
            for fleet in self._fleets
        ]
        self._cache: dict[tuple[ResourceVector, Matchers], str | None] = {}

    def __bool__(self) -> bool:
        return bool(self._fleets)

    def names(self) -> str:
        """The fleets' names, for messages."""
        return ", ".join(f.fleet for f in self._fleets)

    def reason(self, task: TaskRequest, code: ReasonCode) -> str | None:
        """What the fleets do about ``task``, left pending for ``code``.

        None when no fleet's instance type can hold it, or when a new agent would
        not help (its capacity group holds it back).
        """
        if not self._fleets or code in GROUP_REASONS:
            return None
        key = (task.resources, task.hard.matchers)
        if key not in self._cache:
            self._cache[key] = self._reason(*key)
        return self._cache[key]

    def _reason(self, demand: ResourceVector, rules: Matchers) -> str | None:
        fitting: list[tuple[FleetCapacity, FleetShape]] = []
        for fleet, shapes in self._shapes:
            shape = next(
                (s for s, has in shapes if has.covers(demand) and matches(s.attributes, rules)),
                None,
            )
            if shape is not None:
                fitting.append((fleet, shape))
        for fleet, shape in fitting:
            if not fleet.at_max:
                return f"waiting for fleet {fleet.fleet} to launch a {shape.instance_type}"
        at_max = [
            f"fleet {fleet.fleet} is at its max of {fleet.max} instances" for fleet, _ in fitting
        ]
        return "; ".join(at_max) or None
