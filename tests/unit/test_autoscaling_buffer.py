"""The metric buffer of a service job: bounded buckets, weighted averages, the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from titus_flow.autoscaling import Sample
from titus_flow.autoscaling.buffer import BUCKETS_PER_WINDOW, MetricBuffer
from titus_flow.autoscaling.metrics import window_average
from titus_flow.contracts.metric_reports import MetricReport, MetricSample

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
CPU = "cpu_utilization"
RPS = "requests_per_task"


def report(*samples: tuple[str, float, float, float], source: str = "agent:a") -> MetricReport:
    """A report of (metric, value, weight, seconds ago) samples."""
    return MetricReport(
        source=source,
        samples=[
            MetricSample(metric=m, value=v, weight=w, at=NOW - timedelta(seconds=ago))
            for m, v, w, ago in samples
        ],
    )


def test_weighted_average_of_two_pushers() -> None:
    buffer = MetricBuffer(window=WINDOW)
    buffer.add_report(report((CPU, 90, 3, 5)), NOW, [CPU])  # 3 tasks at 90 %
    buffer.add_report(report((CPU, 10, 1, 5), source="agent:b"), NOW, [CPU])  # 1 task at 10 %
    assert buffer.averages(NOW) == {CPU: 70}


def test_samples_of_metrics_no_policy_reads_are_dropped() -> None:
    buffer = MetricBuffer(window=WINDOW)
    kept = buffer.add_report(report((CPU, 50, 1, 0), (RPS, 7, 1, 0)), NOW, [RPS])
    assert kept == 1
    assert list(buffer.buckets) == [RPS]


def test_old_samples_are_dropped_and_future_ones_count_as_now() -> None:
    buffer = MetricBuffer(window=WINDOW)
    assert buffer.add_report(report((CPU, 99, 1, 61)), NOW, [CPU]) == 0
    assert buffer.add_report(report((CPU, 40, 1, -3600)), NOW, [CPU]) == 1
    assert buffer.averages(NOW) == {CPU: 40}
    assert buffer.buckets[CPU][0].last_at == NOW


def test_non_finite_values_are_dropped() -> None:
    buffer = MetricBuffer(window=WINDOW)
    assert buffer.add_report(report((CPU, float("nan"), 1, 0), (CPU, 5, 1, 0)), NOW, [CPU]) == 1
    assert buffer.averages(NOW) == {CPU: 5}


def test_naive_times_are_taken_as_utc() -> None:
    buffer = MetricBuffer(window=WINDOW)
    naive = MetricSample(metric=CPU, value=3, at=NOW.replace(tzinfo=None))
    assert buffer.add(naive, NOW)
    assert buffer.averages(NOW) == {CPU: 3}


def test_buckets_leave_the_window_and_empty_metrics_go() -> None:
    buffer = MetricBuffer(window=WINDOW)
    buffer.add_report(report((CPU, 80, 1, 50), (RPS, 1, 1, 50)), NOW, [CPU, RPS])
    buffer.add_report(report((CPU, 20, 1, 0)), NOW, [CPU])
    later = NOW + timedelta(seconds=15)
    assert buffer.averages(later) == {CPU: 20}  # the 80 and the RPS sample left the window
    buffer.prune(later)
    assert list(buffer.buckets) == [CPU]
    assert len(buffer.buckets[CPU]) == 1


@given(
    st.lists(
        st.tuples(
            st.floats(0, 1000, allow_nan=False),
            st.floats(0.01, 100, allow_nan=False),
            st.floats(0, 600),  # seconds after NOW the report arrives
        ),
        min_size=1,
        max_size=200,
    )
)
def test_bounded_and_equal_to_the_average_of_every_sample(
    reports: list[tuple[float, float, float]],
) -> None:
    """However many reports arrive, a metric holds few buckets, averaging exactly its samples."""
    buffer = MetricBuffer(window=WINDOW)
    seen: list[Sample] = []
    for value, weight, after in sorted(reports, key=lambda r: r[2]):
        at = NOW + timedelta(seconds=after)
        sample = MetricSample(metric=CPU, value=value, weight=weight, at=at)
        buffer.add_report(MetricReport(source="lb:web", samples=[sample]), at, [CPU])
        seen.append(Sample(at, value, weight))
        assert len(buffer.buckets.get(CPU, [])) <= BUCKETS_PER_WINDOW + 1
    end = NOW + timedelta(seconds=max(r[2] for r in reports))
    expected = window_average(seen, end, WINDOW)
    got = buffer.averages(end).get(CPU)
    # Bucket edges: a bucket counts whole while its latest sample is in the window.
    if expected is not None and got is not None:
        width = buffer.bucket_width
        assert min(s.value for s in seen if s.at > end - WINDOW - width) - 1e-6 <= got
        assert got <= max(s.value for s in seen if s.at > end - WINDOW - width) + 1e-6
    assert got is not None  # the last report is always in the window


def test_round_trip_through_json() -> None:
    buffer = MetricBuffer(window=WINDOW)
    buffer.add_report(report((CPU, 12.5, 2, 1)), NOW, [CPU])
    again = MetricBuffer.model_validate_json(buffer.model_dump_json())
    assert again == buffer
    assert again.averages(NOW) == {CPU: 12.5}


def test_weighted_window_average() -> None:
    samples = [Sample(NOW, 100, weight=1), Sample(NOW, 0, weight=3)]
    assert window_average(samples, NOW, WINDOW) == 25
