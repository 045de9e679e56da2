"""Where a job's tasks may (hard) and should (soft) be placed."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictBool

from titus_flow.spec.base import SpecModel


def _attribute_value(value: Any) -> Any:
    # Checked up front: a plain ``str | list[str]`` union reports one error per
    # member ("should be a valid string", "should be a valid list"), which confuses.
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list | tuple) and not value:
        raise ValueError("empty list: no agent could match; list at least one value")
    raise ValueError(
        f"invalid attribute value {value!r}: use a string or a list of strings"
        ' (quote numbers, e.g. "1")'
    )


AttributeValue = Annotated[
    str | Annotated[list[str], Field(min_length=1)], BeforeValidator(_attribute_value)
]
"""The value an agent attribute must equal, or a list of values it must be one of."""


class ConstraintSet(SpecModel):
    """One set of placement rules.

    ``attributes`` maps an agent attribute to the value it must equal, or to a
    list of values it must be one of: ``{"zone": ["us-east-1a", "us-east-1b"]}``.
    """

    unique_host: StrictBool = Field(
        default=False, description="At most one task of the job per agent."
    )
    zone_balance: StrictBool = Field(
        default=False, description="Spread the job's tasks over zones."
    )
    attributes: dict[Annotated[str, Field(min_length=1)], AttributeValue] = Field(
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


HOST_NETWORK_ATTRIBUTE = "titus-flow.host-network"
"""The agent attribute (value ``allowed``) of agents started with ``--allow-host-network``."""


def placement_constraints(constraints: Constraints, network: str) -> Constraints:
    """``constraints`` as the scheduler applies them to a task on ``network``.

    A task on the host network may only go to an agent that allows it: the
    hard constraint ``titus-flow.host-network = allowed`` is added.
    """
    if network != "host":
        return constraints
    raw = constraints.model_dump()
    raw["hard"]["attributes"][HOST_NETWORK_ATTRIBUTE] = "allowed"
    return Constraints.model_validate(raw)  # validated, so frozen like any spec model
