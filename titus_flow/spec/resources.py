"""How much of an agent a task needs."""

from __future__ import annotations

from pydantic import Field, StrictFloat, StrictInt

from titus_flow.spec.base import SpecModel
from titus_flow.spec.quantities import Mebibytes

# Docker refuses a memory limit under 6 MiB ("Minimum memory limit allowed is 6MB");
# catching it here makes it the user's error at load time, not a failed launch.
MIN_MEMORY_MIB = 6


class Resources(SpecModel):
    """Resources reserved for each task; the container is limited to them.

    Example::

        Resources(cpu=0.5, memory="256Mi", disk="1Gi")
    """

    # At least one millicore: the scheduler counts in millicores, and less would be 0.
    cpu: StrictFloat = Field(
        default=1.0, ge=0.001, le=1024, description="CPU cores (fractions allowed, min 0.001)."
    )
    memory: Mebibytes = Field(
        default=512, ge=MIN_MEMORY_MIB, description='Memory: MiB or "512Mi", "2Gi" (min 6Mi).'
    )
    disk: Mebibytes = Field(default=1024, ge=0, description='Disk: MiB or "10Gi".')
    network_mbps: StrictInt = Field(default=128, ge=0, description="Network bandwidth in Mbit/s.")
    gpu: StrictInt = Field(default=0, ge=0, le=64, description="Whole GPUs.")

    @property
    def millicores(self) -> int:
        """CPU in thousandths of a core, the unit the scheduler counts in."""
        return round(self.cpu * 1000)
