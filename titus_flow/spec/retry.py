"""When and how a failed task attempt is tried again."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from titus_flow.spec.base import SpecModel
from titus_flow.spec.quantities import Duration, format_duration

ExitCode = Annotated[StrictInt, Field(ge=0, le=255)]
"""A process exit code as the shell reports it, 0-255 (128 + n for signal n)."""


class ImmediateBackoff(SpecModel):
    """Retry at once."""

    kind: Literal["immediate"] = "immediate"

    def delay_after(self, failed_attempts: int) -> timedelta:
        """Delay before the next attempt after ``failed_attempts`` failures."""
        return timedelta(0)


class FixedBackoff(SpecModel):
    """Wait the same ``delay`` before every retry."""

    kind: Literal["fixed"] = "fixed"
    delay: Duration = timedelta(seconds=10)

    def delay_after(self, failed_attempts: int) -> timedelta:
        """Delay before the next attempt after ``failed_attempts`` failures."""
        return self.delay


class ExponentialBackoff(SpecModel):
    """Wait ``initial * multiplier**(n-1)`` before retry n, capped at ``max``."""

    kind: Literal["exponential"] = "exponential"
    initial: Duration = timedelta(seconds=1)
    max: Duration = timedelta(minutes=5)
    multiplier: StrictFloat = Field(default=2.0, ge=1.0, le=100.0)

    @model_validator(mode="after")
    def _check_bounds(self) -> ExponentialBackoff:
        if self.max < self.initial:
            raise ValueError(
                f"max ({format_duration(self.max)}) must be at least initial"
                f" ({format_duration(self.initial)}); raise max or lower initial"
            )
        return self

    def delay_after(self, failed_attempts: int) -> timedelta:
        """Delay before the next attempt after ``failed_attempts`` failures."""
        # Cap the exponent so the float power cannot overflow (100.0**64 is fine), and
        # compare as floats: the uncapped delay may be beyond what timedelta can hold.
        exponent = min(max(failed_attempts - 1, 0), 64)
        seconds = self.initial.total_seconds() * self.multiplier**exponent
        if seconds >= self.max.total_seconds():
            return self.max
        return timedelta(seconds=seconds)


Backoff = Annotated[
    ImmediateBackoff | FixedBackoff | ExponentialBackoff, Field(discriminator="kind")
]


def _backoff_shorthand(value: Any) -> Any:
    """Accept ``backoff: immediate`` (a bare kind) as well as a mapping."""
    if isinstance(value, str):
        return {"kind": value}
    return value


class Retry(SpecModel):
    """Retry policy of a batch task.

    Exit-code rules in the style of AWS Batch ``evaluateOnExit`` and Kubernetes
    ``podFailurePolicy``.

    Example::

        Retry(attempts=3, backoff=ExponentialBackoff(initial="1s", max="1m"),
              never_retry_on_exit_codes=[2])
    """

    attempts: StrictInt = Field(
        default=1, ge=1, le=100, description="Attempts in all, the first included."
    )
    backoff: Backoff = Field(default_factory=ImmediateBackoff)
    retry_on_exit_codes: list[ExitCode] | None = Field(
        default=None, description="If set, retry only when the exit code is one of these."
    )
    never_retry_on_exit_codes: list[ExitCode] = Field(
        default_factory=list, description="Never retry when the exit code is one of these."
    )
    retry_on_runtime_limit: StrictBool = Field(
        default=False, description="Retry an attempt that exceeded the runtime limit."
    )

    _shorthand = field_validator("backoff", mode="before")(_backoff_shorthand)

    @model_validator(mode="after")
    def _check_rules(self) -> Retry:
        both = set(self.retry_on_exit_codes or ()) & set(self.never_retry_on_exit_codes)
        if both:
            codes = ", ".join(map(str, sorted(both)))
            raise ValueError(
                f"exit code(s) {codes} are in both retry_on_exit_codes and"
                " never_retry_on_exit_codes; keep each code in one list"
            )
        return self

    def retries_exit_code(self, exit_code: int) -> bool:
        """Whether the rules allow another attempt after ``exit_code``."""
        if exit_code in self.never_retry_on_exit_codes:
            return False
        return self.retry_on_exit_codes is None or exit_code in self.retry_on_exit_codes
