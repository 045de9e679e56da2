"""The submit-time check of a service job's target groups (exit 2 with the reason).

Every ARN is looked up with elbv2 before anything is started: the group must
exist and take ``ip`` or ``instance`` targets. ``local:`` groups need no check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from titus_flow.errors import UserError
from titus_flow.spec.load_balancers import is_local


async def check_target_groups(groups: Sequence[str], vpcs: Sequence[str] = ()) -> None:
    """Raise :class:`~titus_flow.errors.UserError` naming every group a job cannot use.

    ``vpcs``: the VPCs the job's agents run in (its fleets' subnets), when known;
    a group in another VPC is refused. Empty: no VPC check (local agents).
    Each problem names its entry, ``load_balancers[i]``.
    """
    arns = [(index, g) for index, g in enumerate(groups) if not is_local(g)]
    if not arns:
        return
    from titus_flow.load_balancers import aws  # boto3 only when a job names an ARN

    def problems() -> list[str]:
        found = []
        for index, arn in arns:
            problem = aws.group_problem(aws.make_client(arn), arn, vpcs)
            if problem is not None:
                found.append(f"load_balancers[{index}]: {problem}")
        return found

    if found := await asyncio.to_thread(problems):
        raise UserError(found)
