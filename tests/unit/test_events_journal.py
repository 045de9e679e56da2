"""The event journal, cursor and merge (pure), and the bounded labels of workflow metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from titus_flow.events import Cursor, Event, EventKind, EventQuery, Journal, merge
from titus_flow.events.labels import bounded_labels as labels

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def journal_of(count: int, limit: int = 10, job_id: str = "j") -> Journal:
    journal = Journal(job_id, limit=limit)
    for n in range(count):
        journal.append(T0 + timedelta(seconds=n), EventKind.TASK_STATE, task_id=f"{job_id}-{n}")
    return journal


def test_events_are_numbered_from_one_and_paged_after_a_cursor() -> None:
    journal = journal_of(5)
    page = journal.page(EventQuery(after=2, limit=2))
    assert [e.seq for e in page.events] == [3, 4]
    assert page.more and page.missed == 0 and page.next_seq == 6
    assert [e.seq for e in journal.page(EventQuery(after=4)).events] == [5]
    assert journal.page(EventQuery(after=5)).events == []
    assert all(e.job_id == "j" for e in page.events)


def test_a_full_journal_keeps_the_latest_and_reports_what_a_reader_missed() -> None:
    journal = journal_of(25, limit=10)
    assert len(journal) == 10
    page = journal.page(EventQuery(after=3))
    assert page.first_seq == 16 and page.missed == 12  # events 4..15 fell off
    assert [e.seq for e in page.events] == list(range(16, 26))
    assert journal.page(EventQuery(after=15)).missed == 0
    assert journal.page(EventQuery(after=0)).missed == 15


def test_the_tail_goes_on_in_the_next_run_with_the_numbers_continuing() -> None:
    tail = journal_of(25, limit=10).tail(count=3)
    assert [e.seq for e in tail.events] == [23, 24, 25] and tail.next_seq == 26
    carried = Journal("j", tail=tail, limit=10)
    carried.append(T0, EventKind.JOB_FINISHED)
    page = carried.page(EventQuery(after=22))
    assert [e.seq for e in page.events] == [23, 24, 25, 26] and page.missed == 0
    assert carried.page(EventQuery(after=20)).missed == 2


def test_a_cursor_reads_back_what_it_wrote_and_refuses_anything_else() -> None:
    cursor = Cursor.parse("3.480.0")
    assert (cursor.after(0), cursor.after(1), cursor.after(2), cursor.after(7)) == (3, 480, 0, 0)
    cursor.advance(4, 9)
    assert cursor.encode() == "3.480.0.0.9"
    assert Cursor.parse(None).encode() == "0"
    for bad in ("x", "1..2", "-1", "1.a"):
        with pytest.raises(ValueError, match="not an event cursor"):
            Cursor.parse(bad)


def test_merge_orders_sources_by_time_and_resuming_from_any_cursor_repeats_nothing() -> None:
    root = journal_of(2, job_id="root")
    parts = [journal_of(4, job_id="p0"), journal_of(3, job_id="p1")]
    sources = [root, *parts]
    everything = merge([s.page(EventQuery()).events for s in sources], Cursor())
    assert [e.at for e in everything] == sorted(e.at for e in everything)
    for n, stop in enumerate(everything):
        resumed = Cursor.parse(stop.cursor)
        pages = [s.page(EventQuery(after=resumed.after(i))) for i, s in enumerate(sources)]
        rest = merge([page.events for page in pages], resumed)
        assert [(e.job_id, e.seq) for e in rest] == [(e.job_id, e.seq) for e in everything[n + 1 :]]


def test_an_event_is_plain_json_data() -> None:
    event = Event(seq=1, at=T0, kind=EventKind.TASK_STATE, state="Started", attempt=1)
    assert event.kind == "task_state" and event.cursor == ""


def test_metric_labels_take_bounded_values_only() -> None:
    assert labels(job_type="batch", state="Finished", reason="oom_killed") == {
        "job_type": "batch",
        "state": "Finished",
        "reason": "oom_killed",
    }
    assert labels(transition="accepted_to_launched", resource="gpu")
    with pytest.raises(ValueError, match="unbounded"):
        labels(job_type="batch", task_id="job-1-0")
    with pytest.raises(ValueError, match="unbounded"):
        labels(state="job-1-0")
    assert labels(reason="capacity_group", capacity_group="prod")  # operators name groups
