"""Capacity groups: named shares of the cluster with a tier, a guarantee and limits (Titus).

Jobs name their group in ``capacity_group`` (``default`` when they do not).
A group's ``tier`` is the tier of every task of its jobs: critical tasks are
placed before flex ones in each scheduling iteration. A critical group's
``guarantee`` is capacity kept for it: the part it does not use is held back
from flex tasks of other groups. A ``limit`` caps what a group's running tasks
may use in all; further tasks wait.

Example (YAML, for ``titus-flow apply``)::

    capacity_groups:
      - name: prod
        tier: critical
        guarantee: {cpu: 8, memory: 16Gi}
        limit: {cpu: 16, memory: 32Gi}
      - name: batch
        limit: {tasks: 100}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictFloat, StrictInt, ValidationInfo, field_validator

from titus_flow.spec.base import Name, SpecModel
from titus_flow.spec.quantities import Mebibytes, format_mebibytes

DEFAULT_GROUP = "default"
"""The group of jobs that name none; flex and unlimited unless defined otherwise."""

# Far above any cluster; keeps millicore arithmetic in a sane range.
_MAX_CORES = 1_000_000


def _millicores(cpu: float) -> int:
    # The scheduler counts CPU in thousandths of a core (as Resources.millicores).
    return round(cpu * 1000)


class CapacityGuarantee(SpecModel):
    """Capacity a critical group is promised: held back from other groups' flex tasks."""

    cpu: StrictFloat = Field(default=0.0, ge=0, le=_MAX_CORES, description="CPU cores.")
    memory: Mebibytes = Field(default=0, ge=0, description='Memory: MiB or "16Gi".')

    @property
    def millicores(self) -> int:
        """CPU in thousandths of a core, the unit the scheduler counts in."""
        return _millicores(self.cpu)


class CapacityLimit(SpecModel):
    """The most a group's running tasks may use together; unset fields do not limit."""

    cpu: StrictFloat | None = Field(default=None, ge=0, le=_MAX_CORES, description="CPU cores.")
    memory: Mebibytes | None = Field(default=None, ge=0, description='Memory: MiB or "32Gi".')
    tasks: StrictInt | None = Field(default=None, ge=0, description="Running tasks.")

    @property
    def millicores(self) -> int | None:
        """The CPU limit in thousandths of a core, or ``None`` for no limit."""
        return None if self.cpu is None else _millicores(self.cpu)


class CapacityGroup(SpecModel):
    """A named share of the cluster that jobs draw from (``job.capacity_group``).

    Example::

        CapacityGroup(name="prod", tier="critical", guarantee={"cpu": 8, "memory": "16Gi"})
        CapacityGroup(name="batch", limit=CapacityLimit(tasks=100))
    """

    name: Name = Field(description="Group name, as jobs write it in capacity_group.")
    tier: Literal["critical", "flex"] = Field(
        default="flex", description="critical: placed first, may hold a guarantee."
    )
    guarantee: CapacityGuarantee | None = Field(
        default=None, description="Capacity held back for this group (critical groups only)."
    )
    limit: CapacityLimit | None = Field(
        default=None, description="The most the group's running tasks may use."
    )

    # Field validators (not a model one) so that errors name the field; ``tier``
    # and ``guarantee`` are validated first and are in info.data.
    @field_validator("guarantee")
    @classmethod
    def _critical_only(
        cls, value: CapacityGuarantee | None, info: ValidationInfo
    ) -> CapacityGuarantee | None:
        if value is None:
            return None
        if info.data.get("tier", "critical") != "critical":
            raise ValueError(
                "only critical groups hold a guarantee: make the tier critical"
                " or remove the guarantee"
            )
        if not value.cpu and not value.memory:
            raise ValueError("guarantees nothing: set cpu and/or memory, or remove guarantee")
        return value

    @field_validator("limit")
    @classmethod
    def _covers_guarantee(
        cls, value: CapacityLimit | None, info: ValidationInfo
    ) -> CapacityLimit | None:
        guarantee = info.data.get("guarantee")
        if value is None or guarantee is None:
            return value
        if value.cpu is not None and value.cpu < guarantee.cpu:
            raise ValueError(
                f"cpu {value.cpu:g} is below the guarantee of {guarantee.cpu:g} cores:"
                " raise limit.cpu or lower guarantee.cpu"
            )
        if value.memory is not None and value.memory < guarantee.memory:
            raise ValueError(
                f"memory {format_mebibytes(value.memory)} is below the guarantee of"
                f" {format_mebibytes(guarantee.memory)}: raise limit.memory or lower"
                " guarantee.memory"
            )
        return value
