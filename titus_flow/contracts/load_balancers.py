"""A service job's load balancer targets: the ``load_balancers`` query and its activities.

:class:`LoadBalancersView` is what the job workflow answers (the local proxy of
``titus-flow lb`` polls it and routes to ``registered`` targets only), and what it
carries over a continue-as-new. The other messages cross the boundary to the
elbv2 activities (:mod:`titus_flow.activities.load_balancers`).

A target's life: ``registering`` (the task is Started and healthy; the
registration is on its way), ``registered`` (the group routes to it),
``draining`` (deregistered before the task is stopped; in flight requests end
during the group's deregistration delay), ``deregistered`` (the group no longer
knows it; the task may now stop).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import Field

from titus_flow.contracts.base import Message


class TargetState(StrEnum):
    """Where one task stands in one target group."""

    REGISTERING = "registering"
    REGISTERED = "registered"
    DRAINING = "draining"
    DEREGISTERED = "deregistered"


class TargetView(Message):
    """One task as a target of one group: its address (IP or instance id) and port."""

    task_id: str
    target: str
    port: int
    state: TargetState


class TargetGroupView(Message):
    """One target group (ARN or ``local:<name>``), its drain wait and its targets."""

    target_group: str
    drain: timedelta
    targets: list[TargetView]


class LoadBalancersView(Message):
    """Every target group of a service job (the ``load_balancers`` query)."""

    groups: list[TargetGroupView]


# --- the activities' messages --------------------------------------------------


class TargetType(StrEnum):
    """What a target group registers: an IP address or an EC2 instance id."""

    IP = "ip"
    INSTANCE = "instance"


class GroupInfo(Message):
    """What the job needs to know of an AWS target group (``describe_groups``)."""

    target_group: str
    target_type: TargetType
    drain: timedelta


class Endpoint(Message):
    """A task to register: the agent it runs on and its host port."""

    task_id: str
    agent_id: str
    port: int


class RegisterInput(Message):
    """Register ``endpoints`` in ``target_group``; agents' addresses come from the scheduler.

    The activity reads the group's target type itself: ``ip`` registers the
    agent's ``private_ip`` attribute, ``instance`` its ``instance_id``.
    """

    target_group: str
    scheduler_id: str
    endpoints: list[Endpoint] = Field(default_factory=list)


class TargetsInput(Message):
    """Register or deregister ``targets`` (addresses already known) in ``target_group``."""

    target_group: str
    targets: list[TargetView] = Field(default_factory=list)


class RegisteredTarget(Message):
    """A target AWS holds in a group (``describe_target_health``), whatever its health."""

    target: str
    port: int
    draining: bool = False
