"""Target tracking: the desired count that brings a per-task metric back to its target."""

from __future__ import annotations

import math

from titus_flow.autoscaling.cooldown import cooling, last_scaling
from titus_flow.autoscaling.metrics import describe_value, metric_value, no_samples
from titus_flow.autoscaling.models import Situation, Vote, VoteKind
from titus_flow.spec.autoscaling import TargetTrackingPolicy

# Float noise must not add a task: 3 * 70.00000000001 / 70 is 3 tasks, not 4.
_EPSILON = 1e-9


def proportional_desired(tasks: int, value: float, target: float) -> int:
    """Tasks that would bring a per-task average ``value`` to ``target``, rounded up.

    Rounding up is aggressive on scale-out and conservative on scale-in (a task
    goes only once the others can absorb its whole share), as AWS does.
    """
    return math.ceil(tasks * value / target - _EPSILON)


def target_tracking_vote(policy: TargetTrackingPolicy, situation: Situation) -> Vote:
    """What ``policy`` wants in ``situation``.

    During the scale-out cooldown the metric still reflects the tasks from
    before that scale-out, so the count is computed from that capacity and only
    a larger scale-out goes ahead (the tasks added count towards it); scale-in
    waits for the cooldown to end. After a scale-in, the next one waits for
    ``scale_in_cooldown``; a scale-out never waits for a scale-in cooldown.
    Within ``tolerance`` of the target nothing changes (it would flap).
    """
    value = metric_value(situation, policy.metric)
    if value is None:
        return no_samples(policy.name, policy.metric, situation.window)
    desired = situation.capacity.desired
    seen = describe_value(policy.metric, value, situation.window)

    def vote(kind: VoteKind, wanted: int | None, why: str) -> Vote:
        return Vote(policy.name, kind, wanted, value, f"{seen}, target {policy.target:g}: {why}")

    last_out = last_scaling(situation.history, policy.name, "out")
    out_cooling = cooling(last_out, situation.now, policy.scale_out_cooldown)
    base = last_out.old_desired if out_cooling and last_out is not None else desired
    if base == 0:
        return vote("hold", None, "no task to average over; keep min at 1 or more")
    wanted = proportional_desired(base, value, policy.target)
    if wanted != desired and abs(value / policy.target - 1) <= policy.tolerance + _EPSILON:
        return vote("hold", None, f"{desired} task(s): within {policy.tolerance:.0%} of the target")
    if wanted > desired:
        return vote("out", wanted, f"{base} task(s) -> {wanted}")
    if out_cooling:
        return vote("hold", None, "scale-out cooldown: the tasks just added are not in the metric")
    if wanted == desired:
        return vote("hold", None, f"{desired} task(s) is right")
    if policy.disable_scale_in:
        return vote("abstain", None, f"would scale in to {wanted}, but scale-in is disabled")
    last_in = last_scaling(situation.history, policy.name, "in")
    if cooling(last_in, situation.now, policy.scale_in_cooldown):
        return vote("hold", None, f"would scale in to {wanted}, but the scale-in cooldown runs")
    return vote("in", wanted, f"{desired} task(s) -> {wanted}")
