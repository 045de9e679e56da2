"""The decision: every policy votes, the votes combine, the result stays in min..max.

Deterministic and free of I/O (the time is ``Situation.now``), so a workflow
can call it and replay it.
"""

from __future__ import annotations

from collections.abc import Sequence

from titus_flow.autoscaling.models import Decision, Situation, Vote
from titus_flow.autoscaling.step import step_vote
from titus_flow.autoscaling.target_tracking import target_tracking_vote
from titus_flow.spec.autoscaling import Policy, TargetTrackingPolicy


def without_tolerance(policies: Sequence[Policy]) -> list[Policy]:
    """``policies`` with target tracking acting on any difference (as before tolerances)."""
    return [
        p.model_copy(update={"tolerance": 0.0}) if isinstance(p, TargetTrackingPolicy) else p
        for p in policies
    ]


def vote(policy: Policy, situation: Situation) -> Vote:
    """The vote of one policy (of either kind)."""
    if isinstance(policy, TargetTrackingPolicy):
        return target_tracking_vote(policy, situation)
    return step_vote(policy, situation)


def pause_reason(situation: Situation) -> str | None:
    """Why no policy may act now, or None."""
    reasons = [
        text
        for flag, text in (
            (situation.paused, "autoscaling is paused"),
            (situation.update_in_progress, "a rolling update is in progress"),
            (situation.canary_in_progress, "a canary is in progress"),
        )
        if flag
    ]
    return "; ".join(reasons) or None


def combine(votes: Sequence[Vote]) -> Vote | None:
    """The winning vote, as AWS combines policies; None keeps desired.

    Scale out if any policy says out, to the largest count asked; scale in only
    if every policy that has a say (not abstaining) says in, to the largest of
    their counts (the smallest scale-in).
    """
    outs = [v for v in votes if v.kind == "out"]
    if outs:
        return max(outs, key=lambda v: v.desired or 0)
    voting = [v for v in votes if v.kind != "abstain"]
    if voting and all(v.kind == "in" for v in voting):
        return max(voting, key=lambda v: v.desired or 0)
    return None


def decide(situation: Situation) -> Decision:
    """The decision for ``situation``: a new desired count within min..max, or none.

    Desired outside min..max (a scheduled action moved a bound) is first
    brought inside; a pause (flag, rolling update, canary) changes nothing.
    """
    capacity = situation.capacity
    old = capacity.desired

    def decision(new: int | None, winner: Vote | None, reason: str) -> Decision:
        value = winner.metric_value if winner else None
        policy = winner.policy if winner else None
        return Decision(situation.now, old, new, policy, value, reason)

    if paused := pause_reason(situation):
        return decision(None, None, f"paused: {paused}")
    if capacity.clamp(old) != old:
        new = capacity.clamp(old)
        return decision(new, None, f"desired {old} outside min..max {capacity.min}..{capacity.max}")
    votes = [vote(policy, situation) for policy in situation.policies]
    summary = "; ".join(f"{v.policy}: {v.reason}" for v in votes) or "no policy"
    winner = combine(votes)
    if winner is None or winner.desired is None:
        return decision(None, None, summary)
    new = capacity.clamp(winner.desired)
    if new == old:
        bound = "max" if winner.kind == "out" else "min"
        return decision(None, winner, f"{winner.policy} held at {bound} {new}: {winner.reason}")
    bound = "max" if new < winner.desired else "min"
    clamp_note = "" if new == winner.desired else f" (clamped to {bound} {new})"
    return decision(new, winner, f"{winner.policy}: {winner.reason}{clamp_note}")
