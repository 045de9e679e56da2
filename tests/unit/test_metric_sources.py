"""Metrics a service job reads itself: the Prometheus parser, the CloudWatch reading, the spec."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from titus_flow.autoscaling.counters import Reading, counter_rates
from titus_flow.autoscaling.histograms import histogram_quantile
from titus_flow.autoscaling.prometheus import (
    ExpositionError,
    Sample,
    histogram_buckets,
    metric_value,
    parse,
)
from titus_flow.errors import format_validation_error
from titus_flow.load_balancers import cloudwatch
from titus_flow.spec import JOB_ADAPTER, ServiceJob

# --- the Prometheus text exposition -------------------------------------------------------

EXPOSITION = """\
# HELP queue_depth Jobs waiting.
# TYPE queue_depth gauge
queue_depth{queue="high"} 3
queue_depth{queue="low",zone="a"} 4 1700000000000

# TYPE requests_total counter
requests_total 1.5e3
odd{path="/a \\"b\\"\\\\c\\n"} -2
gone NaN
"""


@pytest.mark.parametrize(
    ("line", "sample"),
    [
        ("up 1", Sample("up", 1.0)),
        ("up 1 1700000000", Sample("up", 1.0)),
        ("  up\t 0.25  ", Sample("up", 0.25)),
        ("up{} 2", Sample("up", 2.0)),
        ('up{a="x"} 2', Sample("up", 2.0, {"a": "x"})),
        ('up{a="x",} 2', Sample("up", 2.0, {"a": "x"})),
        ('up{ a = "x" , b="" } 2', Sample("up", 2.0, {"a": "x", "b": ""})),
        ('up{a="{},= x"} 2', Sample("up", 2.0, {"a": "{},= x"})),
        ('up{a="q\\"\\\\\\n"} 2', Sample("up", 2.0, {"a": 'q"\\\n'})),
        ("ns:sub_total 1e-3", Sample("ns:sub_total", 0.001)),
        ("big +Inf", Sample("big", math.inf)),
        ("small -Inf", Sample("small", -math.inf)),
    ],
)
def test_a_sample_line(line: str, sample: Sample) -> None:
    assert list(parse(line)) == [sample]


def test_not_a_number_parses() -> None:
    [sample] = parse("x NaN")
    assert math.isnan(sample.value)


@pytest.mark.parametrize(
    "line",
    [
        "9lives 1",  # a name starts with a letter, _ or :
        "up",  # no value
        "up one",
        "up 1 2 3",
        'up{a="x" 1',  # unterminated labels
        'up{a="x} 1',  # unterminated value
        "up{a=x} 1",  # unquoted value
        'up{a="x"b="y"} 1',  # no comma
        'up{a="x"}1',  # no space before the value
    ],
)
def test_a_bad_line_is_an_error_with_its_number(line: str) -> None:
    with pytest.raises(ExpositionError, match=r"^line 2: "):
        list(parse(f"# ok\n{line}\n"))


@pytest.mark.parametrize(
    ("metric", "labels", "value"),
    [
        ("queue_depth", None, 7.0),  # every series of the metric, summed
        ("queue_depth", {"queue": "high"}, 3.0),
        ("queue_depth", {"queue": "low", "zone": "a"}, 4.0),
        ("queue_depth", {"queue": "mid"}, None),  # no series matches
        ("requests_total", None, 1500.0),
        ("requests", None, None),  # names match whole
        ("odd", {"path": '/a "b"\\c\n'}, -2.0),
        ("absent", None, None),
    ],
)
def test_metric_value(metric: str, labels: dict[str, str] | None, value: float | None) -> None:
    assert metric_value(EXPOSITION, metric, labels) == value


def test_metric_value_of_nan_is_not_finite() -> None:
    value = metric_value(EXPOSITION, "gone")
    assert value is not None and math.isnan(value)


# --- counters read as rates ---------------------------------------------------------------

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("previous", "values", "seconds", "rates"),
    [
        ({}, {"a": 100.0}, 10, {}),  # a first reading: nothing to compare with
        ({"a": (100.0, 0)}, {"a": 150.0}, 10, {"a": 5.0}),
        ({"a": (100.0, 0)}, {"a": 100.0}, 10, {"a": 0.0}),  # idle
        ({"a": (100.0, 0)}, {"a": 30.0}, 10, {"a": 3.0}),  # reset: 30 since the restart
        ({"a": (100.0, 0)}, {"a": 150.0}, 0, {}),  # no time passed
        ({"a": (10.0, 0), "b": (0.0, 5)}, {"a": 20.0, "b": 50.0}, 10, {"a": 1.0, "b": 10.0}),
    ],
)
def test_counter_rates_per_second_since_each_tasks_previous_reading(
    previous: dict[str, tuple[float, float]],
    values: dict[str, float],
    seconds: float,
    rates: dict[str, float],
) -> None:
    before = {key: Reading(value, _at(at)) for key, (value, at) in previous.items()}
    got, kept = counter_rates(before, values, _at(seconds))
    assert got == pytest.approx(rates)
    assert kept == before | {key: Reading(value, _at(seconds)) for key, value in values.items()}


def test_a_task_not_read_keeps_its_reading_for_the_next_rate() -> None:
    first = {"a": Reading(0.0, _at(0)), "b": Reading(0.0, _at(0))}
    rates, kept = counter_rates(first, {"a": 10.0}, _at(10))  # b's scrape failed
    assert rates == {"a": 1.0} and kept["b"] == first["b"]
    rates, _ = counter_rates(kept, {"a": 10.0, "b": 40.0}, _at(20))
    assert rates == {"a": 0.0, "b": 2.0}  # b over the 20 s since its last reading


# --- histograms ---------------------------------------------------------------------------

HISTOGRAM = """\
# TYPE latency_seconds histogram
latency_seconds_bucket{path="/a",le="0.1"} 30
latency_seconds_bucket{path="/a",le="0.5"} 40
latency_seconds_bucket{path="/a",le="+Inf"} 45
latency_seconds_bucket{path="/b",le="0.1"} 20
latency_seconds_bucket{path="/b",le="0.5"} 50
latency_seconds_bucket{path="/b",le="+Inf"} 55
latency_seconds_sum 12.5
latency_seconds_count 100
"""


def test_histogram_buckets_sum_the_series_of_each_bound() -> None:
    assert histogram_buckets(HISTOGRAM, "latency_seconds") == {0.1: 50, 0.5: 90, math.inf: 100}
    only_a = histogram_buckets(HISTOGRAM, "latency_seconds", {"path": "/a"})
    assert only_a == {0.1: 30, 0.5: 40, math.inf: 45}
    assert histogram_buckets(HISTOGRAM, "latency") == {}
    assert histogram_buckets(HISTOGRAM, "latency_seconds", {"path": "/c"}) == {}


INF = math.inf


@pytest.mark.parametrize(
    ("quantile", "buckets", "value"),
    [
        (0.5, {0.1: 50, 0.5: 90, 1.0: 99, INF: 100}, 0.1),  # the rank at a bound
        (0.2, {0.1: 50, 0.5: 90, 1.0: 99, INF: 100}, 0.04),  # from 0 below the first
        (0.9, {0.1: 50, 0.5: 90, 1.0: 99, INF: 100}, 0.5),
        (0.7, {0.1: 50, 0.5: 90, 1.0: 99, INF: 100}, 0.3),  # interpolated
        (0.995, {0.1: 50, 0.5: 90, 1.0: 99, INF: 100}, 1.0),  # in +Inf: the top bound
        (0.5, {0.1: 50, 0.5: 40, INF: 100}, 0.1),  # a count that goes down is the one below
        (0.5, {-1.0: 60, 0.0: 80, INF: 100}, -1.0),  # a first bound <= 0 is the answer
        (0.5, {0.5: 0, INF: 0}, None),  # nothing observed
        (0.5, {0.1: 5, 0.5: 9}, None),  # no +Inf bucket: not a histogram
        (0.5, {INF: 10}, None),  # only +Inf: no bound to give
        (0.5, {}, None),
    ],
)
def test_histogram_quantile(
    quantile: float, buckets: dict[float, float], value: float | None
) -> None:
    found = histogram_quantile(quantile, buckets)
    assert found == (None if value is None else pytest.approx(value))


# --- the CloudWatch reading -----------------------------------------------------------------

ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"


def test_target_group_dimension_is_the_arn_suffix() -> None:
    assert cloudwatch.target_group_dimension(ARN) == "targetgroup/web/0123456789abcdef"
    with pytest.raises(ValueError, match="not a target group ARN"):
        cloudwatch.target_group_dimension("local:web")


@pytest.mark.parametrize(
    ("window", "minutes"),
    [(timedelta(seconds=15), 1), (timedelta(seconds=60), 1), (timedelta(seconds=61), 2)],
)
def test_reading_range_is_whole_minutes_ending_a_minute_back(
    window: timedelta, minutes: int
) -> None:
    at = datetime(2026, 12, 2, 10, 7, 42, 500, tzinfo=UTC)
    start, end = cloudwatch.reading_range(at, window)
    assert end == datetime(2026, 12, 2, 10, 6, tzinfo=UTC)
    assert end - start == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("sums", "minutes", "rate"),
    [
        ([600.0], 1, 10.0),  # 600 requests per target in a minute: 10 per second
        ([600.0, 1200.0], 2, 15.0),
        ([1200.0], 2, 10.0),  # a minute without a datapoint had no request
        ([], 3, 0.0),
    ],
)
def test_requests_per_second(sums: list[float], minutes: int, rate: float) -> None:
    end = datetime(2026, 12, 2, 10, 6, tzinfo=UTC)
    start = end - timedelta(minutes=minutes)
    assert cloudwatch.requests_per_second(sums, start, end) == pytest.approx(rate)


def test_requests_per_second_of_an_empty_range_is_an_error() -> None:
    end = datetime(2026, 12, 2, 10, 6, tzinfo=UTC)
    with pytest.raises(ValueError, match="empty range"):
        cloudwatch.requests_per_second([1.0], end, end)


# --- the spec ---------------------------------------------------------------------------------

SOURCE = {"prometheus": {"port": "metrics", "metric": "queue_depth"}}


def service(*policies: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "service",
        "name": "worker",
        "container": {"image": "busybox", "ports": ["http", "metrics"]},
        "autoscaling": {"policies": list(policies)},
    }


def policy(**fields: Any) -> dict[str, Any]:
    return {
        "name": "queue",
        "kind": "target_tracking",
        "metric": "custom:queue_depth",
        "target": 10,
        "metric_source": SOURCE,
        **fields,
    }


def errors(job: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        JOB_ADAPTER.validate_python(job)
    return "\n".join(format_validation_error(info.value, "jobs.yaml", "worker"))


def test_a_prometheus_source_round_trips_with_defaults() -> None:
    job = JOB_ADAPTER.validate_python(service(policy()))
    assert isinstance(job, ServiceJob) and job.autoscaling is not None
    [source] = job.autoscaling.metric_sources.values()
    assert (source.prometheus.path, source.prometheus.labels) == ("/metrics", {})
    assert JOB_ADAPTER.validate_python(job.model_dump(mode="json")) == job


def test_the_port_must_be_a_port_of_the_container() -> None:
    job = service(policy(metric_source={"prometheus": {"port": "prom", "metric": "q"}}))
    message = errors(job)
    assert "autoscaling" in message
    assert "policies[0].metric_source.prometheus.port: 'prom' is not a port" in message


def test_only_custom_metrics_have_a_source() -> None:
    message = errors(service(policy(metric="cpu_utilization")))
    assert "metric_source reads a custom metric" in message


@pytest.mark.parametrize(
    ("prometheus", "field"),
    [
        ({"port": "metrics", "metric": "9bad"}, "metric"),
        ({"port": "metrics", "metric": "q", "path": "metrics"}, "path"),
        ({"port": "metrics", "metric": "q", "labels": {"bad-name": "x"}}, "labels"),
        ({"port": "metrics", "metric": "q", "scrape": "1s"}, "scrape"),
        ({"port": "metrics", "metric": "q", "quantile": 1.5}, "quantile"),
        ({"port": "metrics", "metric": "q", "quantile": 0}, "quantile"),
    ],
)
def test_a_bad_source_names_its_field(prometheus: dict[str, Any], field: str) -> None:
    message = errors(service(policy(metric_source={"prometheus": prometheus})))
    assert f"metric_source.prometheus.{field}" in message


def test_a_histogram_is_not_also_a_counter() -> None:
    both = {"port": "metrics", "metric": "q", "quantile": 0.99, "rate": True}
    message = errors(service(policy(metric_source={"prometheus": both})))
    assert "metric_source.prometheus" in message and "remove rate: true" in message


def test_one_metric_has_one_source() -> None:
    other = {"prometheus": {"port": "metrics", "metric": "other"}}
    job = service(policy(), policy(name="again", metric_source=other))
    assert "a metric has one source" in errors(job)
    # the same source twice, or once and none, is fine
    JOB_ADAPTER.validate_python(service(policy(), policy(name="again")))
    JOB_ADAPTER.validate_python(service(policy(), policy(name="again", metric_source=None)))
