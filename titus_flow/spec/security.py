"""The AWS identity and network groups a job's tasks run with.

Carried on the spec and passed to the agent at launch; the metadata proxy and
the networking work use them when those land. Today they are validated and
recorded (``job describe`` shows them).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from titus_flow.spec.base import Matches, SpecModel, repeated

IAM_ROLE_PATTERN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"
SECURITY_GROUP_PATTERN = r"^sg-[0-9a-f]{8,17}$"

IamRoleArn = Annotated[
    str,
    Matches(
        IAM_ROLE_PATTERN,
        "IAM role ARN",
        "use arn:aws:iam::<12-digit account>:role/<name>, e.g. arn:aws:iam::123456789012:role/app",
    ),
]
"""An IAM role ARN, e.g. ``arn:aws:iam::123456789012:role/app``."""

SecurityGroupId = Annotated[
    str,
    Matches(
        SECURITY_GROUP_PATTERN,
        "security group id",
        "use sg- and 8 to 17 lowercase hex digits, e.g. sg-0123abcd",
    ),
]
"""An EC2 security group id, e.g. ``sg-0123abcd``."""


class SecurityProfile(SpecModel):
    """The IAM role and security groups of a job's tasks.

    Example::

        SecurityProfile(iam_role="arn:aws:iam::123456789012:role/app",
                        security_groups=["sg-0123abcd"])
    """

    iam_role: IamRoleArn | None = Field(
        default=None, description="IAM role ARN the tasks' AWS credentials come from."
    )
    security_groups: list[SecurityGroupId] = Field(
        default_factory=list, description="EC2 security group ids of the tasks' network."
    )

    @property
    def is_set(self) -> bool:
        """Whether a role or any group is given (an empty profile is not recorded)."""
        return self.iam_role is not None or bool(self.security_groups)

    def describe(self) -> str:
        """One line for ``job describe``: the role and groups."""
        groups = ", ".join(self.security_groups) or "-"
        return f"security: iam_role {self.iam_role or '-'}; security_groups {groups}"

    @field_validator("security_groups")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if duplicates := repeated(value):
            raise ValueError(f"{duplicates} listed twice; list each security group once")
        return value
