"""A small parser of the Prometheus text exposition format (what ``/metrics`` serves).

Pure: the agent's ``scrape_metric`` activity fetches the text, this reads one
metric out of it. Sample lines are ``name{label="value",...} value [timestamp]``
(labels optional; values may be ``NaN``, ``+Inf``, ``-Inf``); ``#`` lines (HELP,
TYPE, comments) and blank lines are skipped. Gauges and counters are one line a
series; histogram and summary series (``_bucket``, ``_sum``, ``_count``) are
lines too, read by their full name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*\"")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class ExpositionError(ValueError):
    """A line that is not a sample line, with its number."""


@dataclass(frozen=True)
class Sample:
    """One series' value: its metric name, labels and value."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def parse(text: str) -> Iterator[Sample]:
    """Every sample line of ``text``, in order; ExpositionError at the first bad line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            yield _sample(line)
        except ValueError as err:
            raise ExpositionError(f"line {number}: {err}: {line[:80]!r}") from None


def _sample(line: str) -> Sample:
    match = _NAME.match(line)
    if match is None:
        raise ValueError("no metric name")
    name, rest = match[0], line[match.end() :]
    labels: dict[str, str] = {}
    if rest.startswith("{"):
        labels, rest = _labels(rest[1:])
    fields = rest.split()
    if not fields or len(fields) > 2 or (rest and not rest[0].isspace()):
        raise ValueError("expected a value (and an optional timestamp) after the name")
    return Sample(name=name, value=_value(fields[0]), labels=labels)


def _labels(text: str) -> tuple[dict[str, str], str]:
    """The labels up to the closing ``}`` and the text after it."""
    labels: dict[str, str] = {}
    position = 0
    while True:
        rest = text[position:].lstrip()
        if rest.startswith("}"):
            return labels, rest[1:]
        position = len(text) - len(rest)
        match = _LABEL_NAME.match(text, position)
        if match is None:
            raise ValueError("bad label")
        position = match.end()
        value = []
        while position < len(text) and text[position] != '"':
            char = text[position]
            if char == "\\" and position + 1 < len(text):
                position += 1
                char = _ESCAPES.get(text[position], "\\" + text[position])
            value.append(char)
            position += 1
        if position >= len(text):
            raise ValueError("unterminated label value")
        labels[match[1]] = "".join(value)
        position += 1  # the closing quote
        rest = text[position:].lstrip()
        if rest.startswith("}"):
            return labels, rest[1:]
        if not rest.startswith(","):
            raise ValueError("expected ',' or '}' after a label value")
        position = len(text) - len(rest) + 1


def _value(text: str) -> float:
    special = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}
    if text.lower() in special:
        return special[text.lower()]
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"bad value {text!r}") from None


def metric_value(text: str, metric: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The sum of the series of ``metric`` that carry every label of ``labels``.

    None when no series matches (the task does not serve the metric). A series
    whose value is not finite (NaN, Inf) makes the sum not finite: the caller
    drops it.
    """
    values = [sample.value for sample in _series(text, metric, labels)]
    return sum(values) if values else None


def histogram_buckets(
    text: str, metric: str, labels: Mapping[str, str] | None = None
) -> dict[float, float]:
    """The cumulative counts of histogram ``metric`` by upper bound (``le``), over its series.

    Reads the ``<metric>_bucket`` series that carry every label of ``labels``
    and sums those of one bound (several series, e.g. one per path, make one
    histogram). Empty when no series matches.
    """
    buckets: dict[float, float] = {}
    for sample in _series(text, f"{metric}_bucket", labels):
        if "le" in sample.labels:
            bound = _value(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def _series(text: str, name: str, labels: Mapping[str, str] | None) -> Iterator[Sample]:
    """The samples of ``text`` named ``name`` that carry every label of ``labels``."""
    wanted = dict(labels or {})
    for sample in parse(text):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
            yield sample
