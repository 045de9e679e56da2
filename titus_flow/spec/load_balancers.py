"""The target groups a service job's tasks are registered in (``load_balancers:``).

Each entry is an elbv2 target group ARN
(``arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>``)
or ``local:<name>``, a group of the embedded loopback proxy (``titus-flow lb``)
that lives in the job's workflow only.
"""

from __future__ import annotations

import re
from typing import Annotated

from titus_flow.spec.base import Matches

LOCAL_PREFIX = "local:"
TARGET_GROUP_ARN_PATTERN = (
    r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:"
    r"targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+"
)
LOCAL_PATTERN = r"local:[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
LOAD_BALANCER_PATTERN = rf"^({TARGET_GROUP_ARN_PATTERN}|{LOCAL_PATTERN})$"
_ARN = re.compile(TARGET_GROUP_ARN_PATTERN)

LoadBalancerRef = Annotated[
    str,
    Matches(
        LOAD_BALANCER_PATTERN,
        "load balancer",
        "use a target group ARN (arn:aws:elasticloadbalancing:<region>:<account>:"
        "targetgroup/<name>/<id>) or local:<name> for the local proxy",
    ),
]
"""A target group ARN or ``local:<name>``."""


def is_local(group: str) -> bool:
    """Whether ``group`` is a group of the local proxy (no AWS call ever concerns it)."""
    return group.startswith(LOCAL_PREFIX)


def region_of(arn: str) -> str:
    """The AWS region of a target group ARN (its fourth field)."""
    if not _ARN.fullmatch(arn):
        raise ValueError(f"not a target group ARN: {arn!r}")
    return arn.split(":")[3]
