"""Human-friendly quantities used across the spec: durations and sizes.

Both parse once at the edge into plain values (``timedelta`` and MiB as ``int``)
and serialize back to the short string form, so a spec round-trips through JSON
and YAML unchanged. Arithmetic is exact (:class:`~fractions.Fraction`), so
``"1.1s"`` is 1.1 s and not a float's neighbour of it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from typing import Annotated, Any

from pydantic import BeforeValidator, GetJsonSchemaHandler, PlainSerializer
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

_NUMBER = r"\d+(?:\.\d+)?"

# Units in microseconds, the resolution of ``timedelta``. Case-sensitive like Go's
# time.ParseDuration: "5M" (minutes? months?) is rejected rather than guessed.
_DURATION_UNITS = {
    "us": 1,
    "ms": 1000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
}
_DURATION_UNIT = "(?:us|ms|s|m|h|d)"  # "ms" before "m": alternation takes the first match
_DURATION_PART = re.compile(rf"({_NUMBER})({_DURATION_UNIT})")
DURATION_PATTERN = rf"^(?:{_NUMBER}{_DURATION_UNIT})+$"
_DURATION = re.compile(DURATION_PATTERN)
_DURATION_HINT = 'use a number of seconds or a string like "30s", "5m", "1h30m", "250ms"'
_MAX_DURATION_US = timedelta.max // timedelta(microseconds=1)


def parse_duration(value: Any) -> timedelta:
    """Parse ``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``, seconds or a timedelta.

    Units: ``us``, ``ms``, ``s``, ``m``, ``h``, ``d``. The result is rounded to
    whole microseconds, the resolution of ``timedelta``.
    """
    if isinstance(value, timedelta):
        micros = Fraction(value // timedelta(microseconds=1))
    elif isinstance(value, bool):  # a bool is an int to Python, never a duration
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HINT}")
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"invalid duration {value!r}: {_DURATION_HINT}")
        micros = Fraction(value) * _DURATION_UNITS["s"]
    elif isinstance(value, str) and _DURATION.match(text := value.strip()):
        micros = sum(
            (Fraction(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text)),
            Fraction(0),
        )
    else:
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HINT}")
    if micros < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    if micros > _MAX_DURATION_US:
        raise ValueError(f"invalid duration {value!r}: too large (the limit is 999999999d)")
    return timedelta(microseconds=round(micros))


def format_duration(value: timedelta) -> str:
    """Format a duration in the compact form :func:`parse_duration` reads, losslessly."""
    micros = value // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    sign, micros = ("-", -micros) if micros < 0 else ("", micros)
    parts = []
    for unit, size in sorted(_DURATION_UNITS.items(), key=lambda item: -item[1]):
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


# Binary (Ki, Mi, ...) and decimal (K/KB, M/MB, ...) units, as fractions of a MiB.
_SIZE_UNITS = {
    "": Fraction(1),
    "Ki": Fraction(1, 1024),
    "Mi": Fraction(1),
    "Gi": Fraction(1024),
    "Ti": Fraction(1024**2),
    **{
        unit + suffix: Fraction(1000**power, 1024**2)
        for power, unit in enumerate(("K", "M", "G", "T"), start=1)
        for suffix in ("", "B")
    },
}
# Longest first so that "KB" is not read as "K" followed by junk.
_SIZE_UNIT = "|".join(sorted((u for u in _SIZE_UNITS if u), key=len, reverse=True))
SIZE_PATTERN = rf"^({_NUMBER})\s*({_SIZE_UNIT})?$"
_SIZE = re.compile(SIZE_PATTERN)
_SIZE_HINT = 'use a number of MiB or a string like "512Mi" or "2Gi"'


def parse_mebibytes(value: Any) -> int:
    """Parse ``"512Mi"``, ``"2Gi"``, ``"1G"`` or an int of MiB into whole MiB.

    Sizes that are not whole MiB (``"1G"`` is 953.67 MiB) are rounded up: a
    reservation must hold at least what was asked for.
    """
    if isinstance(value, bool):  # a bool is an int to Python, never a size
        raise ValueError(f"invalid size {value!r}: {_SIZE_HINT}")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        mib = Fraction(value)
    elif isinstance(value, str) and (match := _SIZE.match(value.strip())):
        mib = Fraction(match.group(1)) * _SIZE_UNITS[match.group(2) or ""]
    else:
        raise ValueError(f"invalid size {value!r}: {_SIZE_HINT}")
    if mib < 0:
        raise ValueError(f"invalid size {value!r}: must not be negative")
    return math.ceil(mib)


def format_mebibytes(mib: int) -> str:
    """Format MiB as ``"2Gi"`` when whole GiB, else ``"512Mi"``."""
    if mib and mib % 1024 == 0:
        return f"{mib // 1024}Gi"
    return f"{mib}Mi"


@dataclass(frozen=True)
class _StringOrNumberSchema:
    """JSON Schema of a quantity: a string matching ``pattern``, or a non-negative number.

    In validation mode the integer branch keeps the field's own bounds (``ge`` etc.),
    which a fixed ``WithJsonSchema`` would drop; in serialization mode the value is
    always the string form.
    """

    pattern: str
    number_type: str  # "number" or "integer"
    description: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        string = {"type": "string", "pattern": self.pattern}
        if handler.mode == "serialization":
            return {**string, "description": self.description}
        number: JsonSchemaValue = {"type": self.number_type, "minimum": 0}
        if self.number_type == "integer":
            # The inner int schema carries the field's constraints (minimum, maximum).
            number.update(handler(core_schema))
        return {"anyOf": [string, number], "description": self.description}


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    _StringOrNumberSchema(
        DURATION_PATTERN,
        "number",
        'A duration: seconds, or "30s", "5m", "1h30m", "250ms" (units us, ms, s, m, h, d).',
    ),
]
"""A non-negative duration written as ``"30s"``, ``"5m"``, ``"1h"`` or seconds."""

Mebibytes = Annotated[
    int,
    BeforeValidator(parse_mebibytes),
    PlainSerializer(format_mebibytes, return_type=str),
    _StringOrNumberSchema(
        SIZE_PATTERN,
        "integer",
        'A size: an integer of MiB, or "512Mi", "2Gi" (Ki, Mi, Gi, Ti; K, M, G, T decimal).',
    ),
]
"""A size in MiB written as an int of MiB or ``"512Mi"`` / ``"2Gi"``."""
