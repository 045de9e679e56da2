"""Sizes of common EC2 instance types, so a fleet file can name a type without sizes.

``cpu`` and ``memory`` are what the type has (vCPUs, MiB); the agent on it offers
that minus the fleet's ``system_reserved_memory``. ``price`` is the approximate
on-demand USD per hour in us-east-1: it only ranks types (cheapest sufficient
first) and need not be current. Types not listed here must declare their sizes
in the fleet file.
"""

from __future__ import annotations

from typing import NamedTuple


class KnownType(NamedTuple):
    """Sizes and relative price of one instance type."""

    cpu: float
    memory_mib: int
    price: float


_GIB = 1024

KNOWN_TYPES: dict[str, KnownType] = {
    "t3.medium": KnownType(2, 4 * _GIB, 0.0416),
    "t3.large": KnownType(2, 8 * _GIB, 0.0832),
    "t3.xlarge": KnownType(4, 16 * _GIB, 0.1664),
    "m5.large": KnownType(2, 8 * _GIB, 0.096),
    "m5.xlarge": KnownType(4, 16 * _GIB, 0.192),
    "m5.2xlarge": KnownType(8, 32 * _GIB, 0.384),
    "m5.4xlarge": KnownType(16, 64 * _GIB, 0.768),
    "c5.large": KnownType(2, 4 * _GIB, 0.085),
    "c5.xlarge": KnownType(4, 8 * _GIB, 0.17),
    "c5.2xlarge": KnownType(8, 16 * _GIB, 0.34),
    "c5.4xlarge": KnownType(16, 32 * _GIB, 0.68),
    "r5.large": KnownType(2, 16 * _GIB, 0.126),
    "r5.xlarge": KnownType(4, 32 * _GIB, 0.252),
    "r5.2xlarge": KnownType(8, 64 * _GIB, 0.504),
    "r5.4xlarge": KnownType(16, 128 * _GIB, 1.008),
}
