"""The resource dimensions as flat int tuples, and how to say amounts of them to people.

The hot path works on plain tuples and lists indexed by the constants below
rather than on :class:`~titus_flow.scheduler.model.ResourceVector` attributes:
indexing is cheaper than attribute access, and one loop covers all dimensions.
"""

from __future__ import annotations

from titus_flow.scheduler.model import Agent, ResourceVector, TaskRequest

CPU, MEMORY, DISK, NETWORK, GPU, PORTS = range(6)
DIMENSIONS = (CPU, MEMORY, DISK, NETWORK, GPU, PORTS)

Vector = tuple[int, int, int, int, int, int]
"""Millicores, memory MiB, disk MiB, network Mbit/s, GPUs, host ports."""


def vector(resources: ResourceVector, ports: int) -> Vector:
    """``resources`` plus a port count as a flat tuple."""
    return (
        resources.millicores,
        resources.memory_mib,
        resources.disk_mib,
        resources.network_mbps,
        resources.gpu,
        ports,
    )


def demand_of(task: TaskRequest) -> Vector:
    """What one task needs."""
    return vector(task.resources, task.ports)


def capacity_of(agent: Agent) -> Vector:
    """An agent's total capacity."""
    return vector(agent.total, agent.port_capacity)


def free_of(agent: Agent) -> Vector:
    """What an agent has free."""
    return vector(agent.free, agent.free_port_count)


def _mebibytes(value: int) -> str:
    if value < 1024:
        return f"{value} MiB"
    gib = value / 1024
    return f"{gib:.0f} GiB" if value % 1024 == 0 else f"{gib:.1f} GiB"


def plural(count: int, noun: str) -> str:
    """``"1 agent"``, ``"3 agents"``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def amount(dimension: int, value: int) -> str:
    """A bare amount: ``"1.5 cores"``, ``"8 GiB"``, ``"500 Mbps"``, ``"2 GPUs"``, ``"3 ports"``."""
    if dimension == CPU:
        return f"{value / 1000:g} " + ("core" if value == 1000 else "cores")
    if dimension in (MEMORY, DISK):
        return _mebibytes(value)
    if dimension == NETWORK:
        return f"{value} Mbps"
    return plural(value, "GPU" if dimension == GPU else "port")


_NOUNS = {
    CPU: "CPU core",
    MEMORY: "memory",
    DISK: "disk",
    NETWORK: "network bandwidth",
    GPU: "GPU",
    PORTS: "host port",
}


def phrase(dimension: int, value: int, *, free: bool = False) -> str:
    """An amount with its noun: ``"8 GiB free memory"``, ``"4 free CPU cores"``."""
    adjective = "free " if free else ""
    noun = _NOUNS[dimension]
    if dimension in (MEMORY, DISK, NETWORK):
        return f"{amount(dimension, value)} {adjective}{noun}"
    number = f"{value / 1000:g}" if dimension == CPU else str(value)
    suffix = "" if value == (1000 if dimension == CPU else 1) else "s"
    return f"{number} {adjective}{noun}{suffix}"
