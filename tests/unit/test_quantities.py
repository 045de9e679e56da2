"""Durations and sizes: parsing, formatting and their round trip."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from titus_flow.spec.quantities import (
    DURATION_PATTERN,
    SIZE_PATTERN,
    format_duration,
    format_mebibytes,
    parse_duration,
    parse_mebibytes,
)

MAX_TIMEDELTA = timedelta(days=999_999_999)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5s", timedelta(milliseconds=1500)),
        ("1.1s", timedelta(seconds=1, milliseconds=100)),  # exact, not a float's neighbour
        ("2d", timedelta(days=2)),
        ("10us", timedelta(microseconds=10)),
        ("1m30s", timedelta(seconds=90)),
        ("0s", timedelta(0)),
        ("0.0000004s", timedelta(0)),  # below a microsecond rounds away
        ("  5m ", timedelta(minutes=5)),
        ("999999999d", MAX_TIMEDELTA),
        (0, timedelta(0)),
        (90, timedelta(seconds=90)),
        (0.5, timedelta(milliseconds=500)),
        (0.1, timedelta(milliseconds=100)),
        (timedelta(minutes=2), timedelta(minutes=2)),
    ],
)
def test_parse_duration(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "  ",
        "5",
        "5M",  # minutes or months? refused rather than guessed
        "1H",
        "5 m",
        "1h 30m",
        "-5s",
        "5x",
        "s",
        ".5s",
        "1e3s",
        "PT10S",
        True,
        False,
        None,
        [1],
        float("nan"),
        float("inf"),
        -1,
        -0.5,
        timedelta(seconds=-1),
        "1000000000d",
    ],
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=r"invalid duration"):
        parse_duration(bad)


def test_duration_messages_say_how_to_fix() -> None:
    with pytest.raises(ValueError, match=r'use a number of seconds or a string like "30s"'):
        parse_duration("soon")
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(-3)
    with pytest.raises(ValueError, match="too large"):
        parse_duration("1000000000d")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=30), "30s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(milliseconds=1500), "1s500ms"),
        (timedelta(microseconds=1500), "1ms500us"),
        (timedelta(microseconds=1), "1us"),
        (MAX_TIMEDELTA, "999999999d"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert re.match(DURATION_PATTERN, text)


@given(st.timedeltas(min_value=timedelta(0)))
def test_duration_round_trip(value: timedelta) -> None:
    text = format_duration(value)
    assert re.match(DURATION_PATTERN, text), text
    assert parse_duration(text) == value


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        (512, 512),
        (0, 0),
        (512.0, 512),
        ("512", 512),
        ("512Mi", 512),
        ("2Gi", 2048),
        ("1.5Gi", 1536),
        ("1Ti", 1024 * 1024),
        ("1024Ki", 1),
        ("1Ki", 1),  # rounded up: a reservation holds at least what was asked
        ("1G", 954),  # 953.67 MiB, rounded up
        ("1GB", 954),
        ("1M", 1),
        ("1000K", 1),
        ("1KB", 1),
        ("1T", 953_675),
        ("0.5Mi", 1),
        ("256 Mi", 256),
        (" 2Gi ", 2048),
    ],
)
def test_parse_mebibytes(value: object, mib: int) -> None:
    assert parse_mebibytes(value) == mib


@pytest.mark.parametrize(
    "bad",
    ["", "lots", "2gi", "2 GiB", "-1", "-1Mi", "1e3", "Mi", 512.5, True, None, [512], -1, "1.Gi"],
)
def test_parse_mebibytes_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=r"invalid size"):
        parse_mebibytes(bad)


def test_size_message_says_how_to_fix() -> None:
    with pytest.raises(ValueError, match=r'use a number of MiB or a string like "512Mi"'):
        parse_mebibytes("lots")


@pytest.mark.parametrize(
    ("mib", "text"), [(0, "0Mi"), (512, "512Mi"), (1024, "1Gi"), (1536, "1536Mi"), (4096, "4Gi")]
)
def test_format_mebibytes(mib: int, text: str) -> None:
    assert format_mebibytes(mib) == text
    assert re.match(SIZE_PATTERN, text)


@given(st.integers(min_value=0, max_value=2**60))
def test_mebibytes_round_trip(mib: int) -> None:
    assert parse_mebibytes(format_mebibytes(mib)) == mib
