"""Reading an attempt's output on the agent (issue 18, item 2): live while it runs,
the kept log after, in bounded pages at byte offsets; and the live mirror itself."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from titus_flow.activities.agent import AgentActivities
from titus_flow.contracts import LOGS_PAGE_BYTES, LogsInput
from titus_flow.runtime.base import Driver
from titus_flow.runtime.mirror import OutputMirrors, TooManyMirrorsError


class LiveDriver:
    """Offers ``live`` as the live output of every attempt (None: no live output)."""

    name = "fake"

    def __init__(self, live: Path | None) -> None:
        self.live = live
        self.asked: list[tuple[str, Path]] = []

    async def live_output(self, name: str, log_path: Path) -> Path | None:
        self.asked.append((name, log_path))
        return self.live


def agent(tmp_path: Path, live: Path | None = None) -> tuple[AgentActivities, LiveDriver]:
    driver = LiveDriver(live)
    return AgentActivities("a1", cast(Driver, driver), tmp_path / "logs"), driver


async def polled_twice(driver: LiveDriver) -> None:
    """Wait until a read has found nothing and looked again (it is waiting)."""
    while len(driver.asked) < 2:
        await asyncio.sleep(0.01)


def end_attempt(activities: AgentActivities, data: bytes) -> None:
    """Keep ``data`` as the log of t-0 attempt 1 and record its exit."""
    log = activities.log_path("t-0", 1)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(data)
    log.with_name("attempt-1.exit.json").write_text("{}")


async def test_a_running_attempt_is_read_from_the_drivers_live_output(tmp_path: Path) -> None:
    live = tmp_path / "live.log"
    live.write_bytes(b"one\ntwo\n")
    activities, driver = agent(tmp_path, live)
    chunk = await activities.read_logs(LogsInput(task_id="t-0", attempt=1, offset=4))
    assert (chunk.data, chunk.next_offset, chunk.complete, chunk.more) == ("two\n", 8, False, False)
    assert driver.asked == [("tf-t-0-a1", activities.log_path("t-0", 1))]


async def test_an_ended_attempt_is_read_from_its_kept_log_in_bounded_pages(
    tmp_path: Path,
) -> None:
    activities, driver = agent(tmp_path, tmp_path / "stale-live.log")
    data = b"x" * (2 * LOGS_PAGE_BYTES + 10)
    end_attempt(activities, data)
    pages = []
    offset = 0
    while True:
        # A client may ask for more; a page never exceeds the bound.
        chunk = await activities.read_logs(
            LogsInput(task_id="t-0", attempt=1, offset=offset, limit=10 * LOGS_PAGE_BYTES)
        )
        pages.append(chunk)
        offset = chunk.next_offset
        if not chunk.more:
            break
    assert [len(p.data) for p in pages] == [LOGS_PAGE_BYTES, LOGS_PAGE_BYTES, 10]
    assert [p.complete for p in pages] == [False, False, True]
    assert "".join(p.data for p in pages).encode() == data
    assert driver.asked == []  # ended: the live output is not even asked for


async def test_a_page_never_ends_inside_a_character(tmp_path: Path) -> None:
    live = tmp_path / "live.log"
    live.write_bytes("abcd\u00e9f".encode())  # \u00e9 is 2 bytes, at offsets 4-5
    activities, _ = agent(tmp_path, live)
    first = await activities.read_logs(LogsInput(task_id="t-0", attempt=1, limit=5))
    assert (first.data, first.next_offset, first.more) == ("abcd", 4, True)
    rest = await activities.read_logs(LogsInput(task_id="t-0", attempt=1, offset=4))
    assert (rest.data, rest.next_offset) == ("\u00e9f", 7)


async def test_a_waiting_read_answers_as_soon_as_output_arrives(tmp_path: Path) -> None:
    live = tmp_path / "live.log"
    live.write_bytes(b"")
    activities, driver = agent(tmp_path, live)
    reading = asyncio.create_task(
        activities.read_logs(LogsInput(task_id="t-0", attempt=1, wait=30))
    )
    await polled_twice(driver)
    assert not reading.done()
    started = time.monotonic()
    live.write_bytes(b"late line\n")
    chunk = await asyncio.wait_for(reading, 5)
    assert chunk.data == "late line\n" and not chunk.complete
    assert time.monotonic() - started < 2


async def test_a_waiting_read_ends_when_the_attempt_does(tmp_path: Path) -> None:
    activities, driver = agent(tmp_path, None)
    reading = asyncio.create_task(
        activities.read_logs(LogsInput(task_id="t-0", attempt=1, wait=30))
    )
    await polled_twice(driver)
    end_attempt(activities, b"")
    chunk = await asyncio.wait_for(reading, 5)
    assert chunk.complete and chunk.data == ""


# -- the mirror ----------------------------------------------------------------------


class FakeStream:
    """An engine stream: yields what the test puts, ends on close or ``end()``."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue()
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self.chunks.get()) is not None:
            yield chunk

    def end(self) -> None:
        self.chunks.put(None)

    def close(self) -> None:
        self.closed.set()
        self.chunks.put(None)


def wait_for(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_mirror_copies_as_output_arrives_and_stops_when_asked(tmp_path: Path) -> None:
    mirrors = OutputMirrors()
    stream = FakeStream()
    path = tmp_path / "a.live"
    opened: list[FakeStream] = []

    def open_stream() -> FakeStream:
        opened.append(stream)
        return stream

    mirrors.ensure("a", path, open_stream)
    stream.chunks.put(b"one\n")
    wait_for(lambda: path.exists() and path.read_bytes() == b"one\n")
    mirrors.ensure("a", path, open_stream)  # already mirrored: no second stream
    stream.chunks.put(b"two\n")
    wait_for(lambda: path.read_bytes() == b"one\ntwo\n")
    assert len(opened) == 1
    mirrors.stop("a")
    assert stream.closed.is_set() and mirrors.running() == []


def test_an_idle_mirror_stops_and_a_new_one_starts_over(tmp_path: Path) -> None:
    mirrors = OutputMirrors(idle=0.2)
    first, second = FakeStream(), FakeStream()
    path = tmp_path / "a.live"
    mirrors.ensure("a", path, lambda: first)
    first.chunks.put(b"one\n")
    wait_for(lambda: path.exists() and path.read_bytes() == b"one\n")
    wait_for(first.closed.is_set)  # nobody read for 0.2 s
    assert mirrors.running() == []
    mirrors.ensure("a", path, lambda: second)
    second.chunks.put(b"one\n")
    second.end()
    wait_for(lambda: path.read_bytes() == b"one\n")
    mirrors.close()


def test_mirrors_are_bounded_and_a_failed_open_frees_its_slot(tmp_path: Path) -> None:
    mirrors = OutputMirrors(max_mirrors=1)

    def gone() -> FakeStream:
        raise LookupError("no such container")

    mirrors.ensure("gone", tmp_path / "gone.live", gone)
    wait_for(lambda: mirrors.running() == [])
    assert not (tmp_path / "gone.live").exists()
    stream = FakeStream()
    mirrors.ensure("a", tmp_path / "a.live", lambda: stream)
    with pytest.raises(TooManyMirrorsError):
        mirrors.ensure("b", tmp_path / "b.live", FakeStream)
    mirrors.close()
    assert stream.closed.is_set()
