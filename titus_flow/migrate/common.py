"""Helpers the AWS Batch and Kubernetes translations share.

Text of the input is only ever data here: it is compared, sliced and joined,
never used as a format string, a template or a regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta

from titus_flow.migrate.reader import Reader
from titus_flow.migrate.report import Dropped
from titus_flow.spec.quantities import format_duration, format_mebibytes

_NOT_NAME = re.compile(r"[^a-z0-9]+")


def job_name(reader: Reader, key: str) -> str:
    """The titus-flow name for the name at ``key``: lowercased, other characters as '-'.

    A name that changes is reported (it is how other jobs of the file refer to it).
    """
    given = reader.required_text(key)
    name = convert_name(given)
    if not name:
        raise reader.fail(key, "no letter or digit in it to make a titus-flow job name from")
    if name != given:
        reader.drop_path(reader.at(key), f"renamed to {name} (lowercase letters, digits and '-')")
    return name


def convert_name(given: str) -> str:
    """``given`` as a titus-flow name: lowercased, each run of other characters one '-'.

    '' if no letter or digit is left.
    """
    return _NOT_NAME.sub("-", given.lower()).strip("-")[:63].rstrip("-")


def seconds(value: int) -> str:
    """A whole number of seconds as a titus-flow duration (``"1h30m"``)."""
    return format_duration(timedelta(seconds=value))


def mebibytes(value: int) -> str:
    """MiB as a titus-flow size (``"512Mi"``)."""
    return format_mebibytes(value)


def platform_variables(
    reader: Reader, key: str, values: Sequence[str], names: Iterable[str], instead: str
) -> None:
    """Report each argument at ``key`` that refers to a variable titus-flow does not set."""
    wanted = tuple(names)
    for index, value in enumerate(values):
        for name in wanted:
            if name in value:
                reader.drop_path(
                    f"{reader.at(key)}[{index}]",
                    f"refers to {name}, which titus-flow does not set: {instead}",
                )


def unique(dropped: Iterable[Dropped]) -> list[Dropped]:
    """``dropped`` without repeats (a definition shared by two jobs is read twice), sorted."""
    return sorted(set(dropped), key=lambda item: (item.path, item.reason))


def drop_all(reader: Reader, reasons: Mapping[str, str]) -> None:
    """Report each present key of ``reasons`` as not carried, with its reason."""
    for key, reason in reasons.items():
        reader.drop(key, reason)
