"""Step scaling: adjust desired by the step that holds how far a metric is past a threshold."""

from __future__ import annotations

import math
from fractions import Fraction

from titus_flow.autoscaling.cooldown import cooling, last_scaling
from titus_flow.autoscaling.metrics import describe_value, metric_value, no_samples
from titus_flow.autoscaling.models import Situation, Vote, VoteKind
from titus_flow.spec.autoscaling import StepAdjustment, StepPolicy


def matching_step(steps: list[StepAdjustment], breach: float) -> StepAdjustment | None:
    """The step whose interval holds ``breach`` (metric minus threshold), if any.

    At or above the threshold a step is ``[lower, upper)``, below it
    ``(lower, upper]`` (AWS), so each value belongs to exactly one step.
    """
    for step in steps:
        lower = -math.inf if step.lower is None else step.lower
        upper = math.inf if step.upper is None else step.upper
        inside = lower <= breach < upper if breach >= 0 else lower < breach <= upper
        if inside:
            return step
    return None


def percent_change(tasks: int, percent: int, min_magnitude: int | None) -> int:
    """Tasks to add (negative: remove) for ``percent`` of ``tasks``, rounded as AWS does.

    Above 1 rounds down, between 0 and 1 becomes 1, between -1 and 0 becomes
    -1, below -1 rounds up (towards 0); then at least ``min_magnitude`` tasks.
    """
    change = Fraction(tasks * percent, 100)
    if change == 0:
        tasks_changed = 0
    elif abs(change) < 1:
        tasks_changed = 1 if change > 0 else -1
    else:
        tasks_changed = math.trunc(change)  # towards 0: down above 1, up below -1
    if min_magnitude is not None and 0 < abs(tasks_changed) < min_magnitude:
        tasks_changed = min_magnitude if tasks_changed > 0 else -min_magnitude
    return tasks_changed


def adjusted(policy: StepPolicy, step: StepAdjustment, tasks: int) -> int:
    """The desired count ``step`` of ``policy`` sets, starting from ``tasks``."""
    if policy.adjustment_type == "exact_capacity":
        return step.adjustment
    if policy.adjustment_type == "percent_change_in_capacity":
        return tasks + percent_change(tasks, step.adjustment, policy.min_adjustment_magnitude)
    return tasks + step.adjustment


def step_vote(policy: StepPolicy, situation: Situation) -> Vote:
    """What ``policy`` wants in ``situation``.

    Cooldown (AWS): after a scale-out of this policy, another one goes ahead
    during ``cooldown`` only if it is larger, counted from the capacity before
    the first (the tasks it added count towards the second); after any scaling
    of this policy, a scale-in waits for the cooldown to end.
    """
    value = metric_value(situation, policy.metric)
    if value is None:
        return no_samples(policy.name, policy.metric, situation.window)
    breach = value - policy.threshold
    seen = (
        f"{describe_value(policy.metric, value, situation.window)}, threshold {policy.threshold:g}"
    )

    def vote(kind: VoteKind, wanted: int | None, why: str) -> Vote:
        return Vote(policy.name, kind, wanted, value, f"{seen}: {why}")

    step = matching_step(list(policy.steps), breach)
    if step is None:
        return vote("abstain", None, "in none of the steps")
    desired = situation.capacity.desired
    last = last_scaling(situation.history, policy.name)
    in_cooldown = cooling(last, situation.now, policy.cooldown)
    base = (
        last.old_desired
        if in_cooldown and last is not None and last.direction == "out"
        else desired
    )
    wanted = max(adjusted(policy, step, base), 0)
    step_text = f"step {step.adjustment:+d} ({policy.adjustment_type})"
    if wanted > desired:
        return vote("out", wanted, f"{step_text}: {base} task(s) -> {wanted}")
    if wanted == desired or (in_cooldown and wanted > base):
        return vote("hold", None, f"{step_text}: {desired} task(s) stay")
    if in_cooldown:
        return vote("hold", None, f"{step_text} would scale in to {wanted}, but the cooldown runs")
    return vote("in", wanted, f"{step_text}: {desired} task(s) -> {wanted}")
