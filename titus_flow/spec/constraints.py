"""Where a job's tasks may (hard) and should (soft) be placed."""

from __future__ import annotations

from pydantic import Field

from titus_flow.spec.base import SpecModel


class ConstraintSet(SpecModel):
    """One set of placement rules.

    ``attributes`` maps an agent attribute to the value it must equal, or to a
    list of values it must be one of: ``{"zone": ["us-east-1a", "us-east-1b"]}``.
    """

    unique_host: bool = Field(default=False, description="At most one task of the job per agent.")
    zone_balance: bool = Field(default=False, description="Spread the job's tasks over zones.")
    attributes: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Agent attribute equals a value, or is in a list."
    )


class Constraints(SpecModel):
    """Hard constraints filter agents; soft constraints only rank them.

    Example::

        Constraints(hard=ConstraintSet(unique_host=True),
                    soft=ConstraintSet(zone_balance=True))
    """

    hard: ConstraintSet = Field(default_factory=ConstraintSet)
    soft: ConstraintSet = Field(default_factory=ConstraintSet)
