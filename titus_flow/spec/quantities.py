"""Human-friendly quantities used across the spec: durations and sizes.

Both parse once at the edge into plain values (``timedelta`` and MiB as ``int``)
and serialize back to the short string form, so a spec round-trips through JSON
and YAML unchanged.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HINT = 'use a number of seconds or a string like "30s", "5m", "1h30m"'


def parse_duration(value: Any) -> timedelta:
    """Parse ``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``, seconds or a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HINT}")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not text or _DURATION_PART.sub("", text) != "":
            raise ValueError(f"invalid duration {value!r}: {_DURATION_HINT}")
        seconds = sum(
            float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text)
        )
    else:
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HINT}")
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Format a duration in the compact form :func:`parse_duration` reads."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|KB|MB|GB|TB)?$")
_SIZE_TO_MIB = {
    None: 1.0,
    "Ki": 1 / 1024,
    "Mi": 1.0,
    "Gi": 1024.0,
    "Ti": 1024.0 * 1024,
    "K": 1000 / 1024**2,
    "KB": 1000 / 1024**2,
    "M": 1000**2 / 1024**2,
    "MB": 1000**2 / 1024**2,
    "G": 1000**3 / 1024**2,
    "GB": 1000**3 / 1024**2,
    "T": 1000**4 / 1024**2,
    "TB": 1000**4 / 1024**2,
}
_SIZE_HINT = 'use a number of MiB or a string like "512Mi" or "2Gi"'


def parse_mebibytes(value: Any) -> int:
    """Parse ``"512Mi"``, ``"2Gi"``, ``"1G"`` or an int of MiB into whole MiB."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}: {_SIZE_HINT}")
    if isinstance(value, int):
        mib = float(value)
    elif isinstance(value, float) and value.is_integer():
        mib = value
    elif isinstance(value, str) and (match := _SIZE.match(value.strip())):
        mib = float(match.group(1)) * _SIZE_TO_MIB[match.group(2)]
    else:
        raise ValueError(f"invalid size {value!r}: {_SIZE_HINT}")
    if mib < 0:
        raise ValueError(f"invalid size {value!r}: must not be negative")
    return int(round(mib))


def format_mebibytes(mib: int) -> str:
    """Format MiB as ``"2Gi"`` when whole GiB, else ``"512Mi"``."""
    if mib and mib % 1024 == 0:
        return f"{mib // 1024}Gi"
    return f"{mib}Mi"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"},
                {"type": "number", "minimum": 0},
            ],
            "description": 'A duration: seconds, or "30s", "5m", "1h30m".',
        }
    ),
]
"""A non-negative duration written as ``"30s"``, ``"5m"``, ``"1h"`` or seconds."""

Mebibytes = Annotated[
    int,
    BeforeValidator(parse_mebibytes),
    PlainSerializer(format_mebibytes, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d+(\.\d+)?\s*(Ki|Mi|Gi|Ti|K|M|G|T|KB|MB|GB|TB)?$"},
                {"type": "integer", "minimum": 0},
            ],
            "description": 'A size: an integer of MiB, or "512Mi", "2Gi".',
        }
    ),
]
"""A size in MiB written as an int of MiB or ``"512Mi"`` / ``"2Gi"``."""
