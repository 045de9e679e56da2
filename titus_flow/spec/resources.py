"""How much of an agent a task needs."""

from __future__ import annotations

from pydantic import Field

from titus_flow.spec.base import SpecModel
from titus_flow.spec.quantities import Mebibytes


class Resources(SpecModel):
    """Resources reserved for each task; the container is limited to them.

    Example::

        Resources(cpu=0.5, memory="256Mi", disk="1Gi")
    """

    cpu: float = Field(default=1.0, gt=0, le=1024, description="CPU cores (fractions allowed).")
    memory: Mebibytes = Field(default=512, ge=4, description='Memory: MiB or "512Mi", "2Gi".')
    disk: Mebibytes = Field(default=1024, ge=0, description='Disk: MiB or "10Gi".')
    network_mbps: int = Field(default=128, ge=0, description="Network bandwidth in Mbit/s.")
    gpu: int = Field(default=0, ge=0, le=64, description="Whole GPUs.")

    @property
    def millicores(self) -> int:
        """CPU in thousandths of a core, the unit the scheduler counts in."""
        return round(self.cpu * 1000)
